"""The streaming multipart reader behind `files:upload`, fed chunk by chunk."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.files.exceptions import FileTooLarge, InvalidUpload, UnsupportedUploadType
from app.files.upload import ReceivedFile, receive_file

BOUNDARY = "b0undary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def _form(*parts: tuple[str, str | None, str | None, bytes], close: bool = True) -> bytes:
    body = b""
    for name, filename, content_type, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if content_type is not None:
            body += f"Content-Type: {content_type}\r\n".encode()
        body += b"\r\n" + data + b"\r\n"
    if close:
        body += f"--{BOUNDARY}--\r\n".encode()
    return body


async def _chunks(body: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def _receive(
    body: bytes, *, content_type: str | None = CONTENT_TYPE, max_file_bytes: int = 1000
) -> tuple[ReceivedFile, bytes]:
    received: list[bytes] = []

    async def sink(data: bytes) -> None:
        received.append(data)

    found = await receive_file(content_type, _chunks(body), sink, max_file_bytes=max_file_bytes)
    return found, b"".join(received)


class TestReceiveFile:
    async def test_the_file_part_reaches_the_sink_byte_for_byte(self) -> None:
        data = bytes(range(256)) * 3 + b"\r\n--b0und"

        found, received = await _receive(_form(("file", "a b.bin", "image/png", data)))

        assert received == data
        assert found == ReceivedFile(filename="a b.bin", content_type="image/png", size=len(data))

    async def test_an_rfc_5987_file_name_is_understood(self) -> None:
        body = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f"filename*=UTF-8''r%C3%A9sum%C3%A9.txt\r\n\r\nx\r\n--{BOUNDARY}--\r\n"
        ).encode()

        found, _ = await _receive(body)

        assert found.filename == "résumé.txt"

    async def test_a_part_without_a_type_is_octet_stream(self) -> None:
        found, _ = await _receive(_form(("file", "x", None, b"1")))

        assert found.content_type == "application/octet-stream"

    async def test_an_empty_file_is_a_file(self) -> None:
        found, received = await _receive(_form(("file", "empty", "text/plain", b"")))

        assert (found.size, received) == (0, b"")

    async def test_a_body_that_is_not_multipart_is_a_415(self) -> None:
        with pytest.raises(UnsupportedUploadType):
            await _receive(b"{}", content_type="application/json")

    async def test_a_missing_boundary_is_refused(self) -> None:
        with pytest.raises(InvalidUpload, match="boundary"):
            await _receive(b"", content_type="multipart/form-data")

    async def test_a_file_over_the_limit_stops_the_upload(self) -> None:
        with pytest.raises(FileTooLarge):
            await _receive(_form(("file", "big", None, b"x" * 1001)))

    @pytest.mark.parametrize(
        ("parts", "message"),
        [
            ((("note", None, None, b"hi"), ("file", "a", None, b"1")), "exactly one part"),
            ((("file", None, None, b"1"),), "exactly one part"),
            ((("file", "a", None, b"1"), ("file", "b", None, b"2")), "more than one"),
            ((("file", "../etc/passwd", None, b"1"),), "not a path"),
            ((("file", "a", "text/html\x01", b"1"),), "media type"),
        ],
    )
    async def test_forms_other_than_one_named_file_are_refused(
        self, parts: tuple[tuple[str, str | None, str | None, bytes], ...], message: str
    ) -> None:
        with pytest.raises(InvalidUpload, match=message):
            await _receive(_form(*parts))

    async def test_a_truncated_body_is_refused(self) -> None:
        with pytest.raises(InvalidUpload, match="without a complete"):
            await _receive(_form(("file", "a", None, b"123"), close=False)[:-5])

    async def test_garbage_is_refused(self) -> None:
        with pytest.raises(InvalidUpload):
            await _receive(b"not a form at all" * 10)
