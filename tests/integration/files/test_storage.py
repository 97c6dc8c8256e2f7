"""`Storage` against the real S3 server: signatures, expiry, tampering, streaming writes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid

import httpx
import pytest

from app.core.config import Settings
from app.files.storage import ObjectMissing, Storage, object_key
from tests.integration.files.conftest import object_bytes

MIB = 1024 * 1024


# A signature's date is whole seconds: a 1 s URL may have almost no life left by its first use
# on a loaded machine. 3 s leaves at least 2.
URL_TTL_S = 3


def _short_lived(settings: Settings, ttl_s: int) -> Storage:
    files = settings.files.model_copy(
        update={"upload_url_ttl_s": ttl_s, "download_url_ttl_s": ttl_s}
    )
    return Storage(s3=settings.s3, files=files)


async def _refused_within(
    http: httpx.AsyncClient, method: str, url: str, timeout_s: float, **kwargs: object
) -> httpx.Response:
    """Repeat the request until S3 refuses it (a URL expiring), failing after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = await http.request(method, url, **kwargs)  # type: ignore[arg-type]
        if response.status_code == 403 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.25)


def _key() -> str:
    return object_key(uuid.uuid4(), "uploads", str(uuid.uuid4()))


class TestPresignedUrls:
    async def test_urls_carry_the_configured_lifetimes_capped_at_5_and_15_minutes(
        self, storage: Storage
    ) -> None:
        upload = storage.upload_url(_key(), content_type="a/b", size=1)
        download = storage.download_url(_key())

        assert "X-Amz-Expires=300" in upload.url
        assert "X-Amz-Expires=900" in download.url
        with pytest.raises(ValueError, match="less than or equal"):
            type(storage.files).model_validate({"download_url_ttl_s": 901})

    async def test_an_upload_url_works_until_it_expires(
        self, settings: Settings, http: httpx.AsyncClient
    ) -> None:
        storage = _short_lived(settings, URL_TTL_S)
        key = _key()
        url = storage.upload_url(key, content_type="text/plain", size=2).url
        headers = {"Content-Type": "text/plain"}

        before = await http.put(url, content=b"ok", headers=headers)
        after = await _refused_within(http, "PUT", url, 10, content=b"ok", headers=headers)

        assert before.status_code == 200
        assert after.status_code == 403
        assert "expired" in after.text

    async def test_a_download_url_works_until_it_expires(
        self, settings: Settings, http: httpx.AsyncClient
    ) -> None:
        storage = _short_lived(settings, URL_TTL_S)
        key = _key()
        await asyncio.to_thread(storage.put, key, b"data", content_type="text/plain")
        url = storage.download_url(key).url

        before = await http.get(url)
        after = await _refused_within(http, "GET", url, 10)

        assert before.content == b"data"
        assert after.status_code == 403

    @pytest.mark.parametrize("tamper", ["key", "signature", "expiry", "size"])
    async def test_a_tampered_url_is_refused_by_the_s3_server(
        self, storage: Storage, http: httpx.AsyncClient, tamper: str
    ) -> None:
        own, other = uuid.uuid4(), uuid.uuid4()
        key = object_key(own, "uploads", "x")
        url = storage.upload_url(key, content_type="text/plain", size=3).url
        if tamper == "key":  # aim the signed URL at another project's prefix
            url = url.replace(f"projects/{own}/", f"projects/{other}/")
        elif tamper == "signature":
            signature = url.rsplit("X-Amz-Signature=", 1)[1]
            url = url.replace(signature, signature[::-1])
        elif tamper == "expiry":
            url = url.replace("X-Amz-Expires=300", "X-Amz-Expires=3000")
        content = b"abcd" if tamper == "size" else b"abc"

        response = await http.put(url, content=content, headers={"Content-Type": "text/plain"})

        assert response.status_code == 403
        assert storage.head(object_key(other, "uploads", "x")) is None
        assert storage.head(key) is None


class TestObjectWriter:
    async def test_a_large_object_goes_up_in_parts_byte_for_byte(self, storage: Storage) -> None:
        data = os.urandom(11 * MIB + 123)  # two full parts (8 MiB default is too big: use 5)
        parts = Storage(
            s3=storage.s3, files=storage.files.model_copy(update={"part_size_bytes": 5 * MIB})
        )
        key = _key()

        def write() -> None:
            with parts.writer(key, content_type="application/zip") as writer:
                for start in range(0, len(data), 300_000):
                    writer.write(data[start : start + 300_000])
                written = writer.close()
            assert written.size == len(data)
            assert written.sha256 == hashlib.sha256(data).hexdigest()

        await asyncio.to_thread(write)

        assert await object_bytes(storage, key) == data
        info = storage.head(key)
        assert info is not None
        assert info.content_type == "application/zip"

    async def test_an_aborted_write_leaves_no_object_and_no_upload(self, storage: Storage) -> None:
        parts = Storage(
            s3=storage.s3, files=storage.files.model_copy(update={"part_size_bytes": 5 * MIB})
        )
        key = _key()

        def write() -> None:
            with parts.writer(key, content_type="a/b") as writer:
                writer.write(b"x" * (6 * MIB))
                raise RuntimeError("handler failed")

        with pytest.raises(RuntimeError, match="handler failed"):
            await asyncio.to_thread(write)

        assert storage.head(key) is None
        uploads = storage.client.list_multipart_uploads(Bucket=storage.bucket, Prefix=key)
        assert uploads.get("Uploads", []) == []

    async def test_a_spooling_writer_stores_the_same_bytes(self, storage: Storage) -> None:
        data = os.urandom(6 * MIB)
        parts = Storage(
            s3=storage.s3, files=storage.files.model_copy(update={"part_size_bytes": 5 * MIB})
        )
        key = _key()

        def write() -> None:
            with parts.writer(key, content_type="a/b", spool=True) as writer:
                for start in range(0, len(data), MIB):
                    writer.write(data[start : start + MIB])

        await asyncio.to_thread(write)

        assert await object_bytes(storage, key) == data

    async def test_a_small_object_is_one_put(self, storage: Storage) -> None:
        key = _key()

        def write() -> None:
            with storage.writer(key, content_type="text/plain") as writer:
                writer.write(b"tiny")

        await asyncio.to_thread(write)

        assert await object_bytes(storage, key) == b"tiny"


class TestReads:
    async def test_a_missing_object_is_reported_as_such(self, storage: Storage) -> None:
        with pytest.raises(ObjectMissing):
            await asyncio.to_thread(storage.open, _key())

    async def test_deleting_what_does_not_exist_is_fine(self, storage: Storage) -> None:
        await asyncio.to_thread(storage.delete_many, [_key(), _key()])
