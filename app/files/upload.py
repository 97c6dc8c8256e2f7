"""Streaming `multipart/form-data` reader for `files:upload`: the file part goes to a sink chunk by
chunk as the request arrives, so no upload is ever held whole in memory or spooled to disk."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from app.files.exceptions import FileTooLarge, InvalidUpload, UnsupportedUploadType
from app.files.schemas import DEFAULT_CONTENT_TYPE, check_content_type, check_filename

FILE_FIELD = "file"
# RFC 5987 `filename*=UTF-8''<percent-encoded>`, which python-multipart leaves out.
_EXTENDED_FILENAME = re.compile(rb"filename\*\s*=\s*(?i:utf-8)''([^;\s]+)")
MAX_PART_HEADER_BYTES = 8192
# Room for the boundaries and part headers around the file in a well-formed body.
FORM_OVERHEAD_BYTES = 16384


def max_body_bytes(max_file_bytes: int) -> int:
    """The largest well-formed body that carries a file of `max_file_bytes`."""
    return max_file_bytes + FORM_OVERHEAD_BYTES


@dataclass(frozen=True)
class ReceivedFile:
    filename: str
    content_type: str
    size: int


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    is_file: bool = False


class _Reader:
    """Collects the parser's callbacks; file data waits in `chunks` for the async sink."""

    def __init__(self, max_file_bytes: int, on_file: Callable[[ReceivedFile], None] | None) -> None:
        self.max_file_bytes = max_file_bytes
        self.on_file = on_file
        self.part = _Part()
        self.header_name = b""
        self.header_value = b""
        self.header_bytes = 0
        self.chunks: list[bytes] = []
        self.file: tuple[str, str] | None = None
        self.file_size = 0
        self.file_done = False
        self.ended = False

    def on_part_begin(self) -> None:
        self.part = _Part()
        self.header_bytes = 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self.header_value += data[start:end]

    def _count_header(self, size: int) -> None:
        self.header_bytes += size
        if self.header_bytes > MAX_PART_HEADER_BYTES:
            raise InvalidUpload("a part's headers are too long")

    def on_header_end(self) -> None:
        self.part.headers[self.header_name.strip().lower()] = self.header_value.strip()
        self.header_name = self.header_value = b""

    def on_headers_finished(self) -> None:
        disposition = self.part.headers.get(b"content-disposition", b"")
        _, options = parse_options_header(disposition)
        if b"filename" not in options and (extended := _EXTENDED_FILENAME.search(disposition)):
            options[b"filename"] = urllib.parse.unquote_to_bytes(extended.group(1))
        name = options.get(b"name")
        if name != FILE_FIELD.encode() or b"filename" not in options:
            raise InvalidUpload(
                f"the form must have exactly one part, a file named `{FILE_FIELD}`"
                f" (got a part named {name.decode('latin-1') if name else 'nothing'!r})"
            )
        if self.file is not None:
            raise InvalidUpload(f"the form has more than one `{FILE_FIELD}` part")
        try:
            filename = check_filename(options[b"filename"].decode("utf-8"))
            raw_type = self.part.headers.get(b"content-type", b"").decode("latin-1")
            content_type = check_content_type(raw_type or DEFAULT_CONTENT_TYPE)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidUpload(f"file part: {exc}") from None
        self.part.is_file = True
        self.file = (filename, content_type)
        if self.on_file is not None:
            self.on_file(ReceivedFile(filename=filename, content_type=content_type, size=0))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self.part.is_file:
            return
        self.file_size += end - start
        if self.file_size > self.max_file_bytes:
            raise FileTooLarge(f"files sent to files:upload may be {self.max_file_bytes} bytes")
        self.chunks.append(data[start:end])

    def on_part_end(self) -> None:
        if self.part.is_file:
            self.file_done = True

    def on_end(self) -> None:
        self.ended = True


async def receive_file(
    content_type: str | None,
    stream: AsyncIterator[bytes],
    sink: Callable[[bytes], Awaitable[None]],
    *,
    max_file_bytes: int,
    on_file: Callable[[ReceivedFile], None] | None = None,
) -> ReceivedFile:
    """Parse a `multipart/form-data` body with one `file` part, passing its bytes to `sink`.

    `on_file` learns the part's name and type (size 0) before any of its bytes reach `sink`."""
    media_type, params = parse_options_header(content_type or "")
    if media_type != b"multipart/form-data":
        raise UnsupportedUploadType(
            f"expected multipart/form-data, got {media_type.decode('latin-1') or 'nothing'!r}"
        )
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise InvalidUpload("the Content-Type header has no usable multipart boundary")
    reader = _Reader(max_file_bytes, on_file)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": reader.on_part_begin,
            "on_part_data": reader.on_part_data,
            "on_part_end": reader.on_part_end,
            "on_header_field": reader.on_header_field,
            "on_header_value": reader.on_header_value,
            "on_header_end": reader.on_header_end,
            "on_headers_finished": reader.on_headers_finished,
            "on_end": reader.on_end,
        },
    )
    body_limit = max_body_bytes(max_file_bytes)
    received = 0
    try:
        async for chunk in stream:
            received += len(chunk)
            if received > body_limit:
                raise FileTooLarge(f"files sent to files:upload may be {max_file_bytes} bytes")
            parser.write(chunk)
            for data in reader.chunks:
                await sink(data)
            reader.chunks.clear()
        parser.finalize()
    except FormParserError:
        raise InvalidUpload("the body is not well-formed multipart/form-data") from None
    except ClientDisconnect:
        raise InvalidUpload("the client disconnected before the upload ended") from None
    if reader.file is None or not reader.file_done or not reader.ended:
        raise InvalidUpload(f"the form ended without a complete `{FILE_FIELD}` part")
    filename, media = reader.file
    return ReceivedFile(filename=filename, content_type=media, size=reader.file_size)
