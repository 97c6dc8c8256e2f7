"""S3 storage: one boto3 client per process, every key under `projects/<id>/`, calls off the loop.

`Storage` methods block (network I/O): async code calls them through `asyncio.to_thread`, task
handlers (which run in threads) call them directly. Presigning needs no network. The same code
works against AWS S3, MinIO and the embedded SeaweedFS server.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import tempfile
import threading
import urllib.parse
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.core.config import FilesSettings, S3Settings, Settings
from app.core.db import utc_now

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)

_lock = threading.Lock()
_clients: dict[tuple[int, str], S3Client] = {}

# How much a reader asks S3 for at a time.
READ_CHUNK_BYTES = 1024 * 1024
# A spooling writer keeps at most this much of a part in memory, the rest in a temporary file.
SPOOL_MEMORY_BYTES = 1024 * 1024
# DeleteObjects takes at most this many keys.
_DELETE_BATCH = 1000


class StorageError(Exception):
    """S3 did not answer or refused a request (network, credentials, bucket)."""


class ObjectMissing(StorageError):
    """The object does not exist."""


def object_key(project_id: uuid.UUID, *parts: str) -> str:
    """The one place object keys are made: `projects/<project_id>/<part>/<part>…`."""
    if not parts or any(not part or "/" in part or part in (".", "..") for part in parts):
        raise ValueError(f"invalid object key parts: {parts!r}")
    return "/".join(("projects", str(project_id), *parts))


def project_prefix(project_id: uuid.UUID) -> str:
    """The prefix of every object of the project: `projects/<project_id>/`."""
    return f"projects/{project_id}/"


def create_client(settings: S3Settings) -> S3Client:
    """A client for `settings`; path-style by default so MinIO and SeaweedFS work unchanged."""
    config = Config(
        region_name=settings.region,
        signature_version="s3v4",
        s3={"addressing_style": settings.addressing_style},
        connect_timeout=settings.timeout_s,
        read_timeout=settings.timeout_s,
        retries={"max_attempts": 2, "mode": "standard"},
    )
    verify: bool | str = str(settings.ca_bundle) if settings.ca_bundle else settings.verify_tls
    return boto3.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        aws_access_key_id=(
            settings.access_key_id.get_secret_value() if settings.access_key_id else None
        ),
        aws_secret_access_key=(
            settings.secret_access_key.get_secret_value() if settings.secret_access_key else None
        ),
        config=config,
        verify=verify,
    )


def get_client(settings: S3Settings) -> S3Client:
    """The process's client for `settings` (boto3 clients are thread-safe, sessions are not).

    Keyed by pid too: a client made before a fork is never shared with the child's sockets.
    """
    key = (os.getpid(), settings.model_dump_json())
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = create_client(settings)
    return client


async def check_bucket(settings: S3Settings) -> None:
    """Raise unless the bucket answers a HEAD request: the readiness check for S3."""
    client = get_client(settings)
    await asyncio.to_thread(client.head_bucket, Bucket=settings.bucket)


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact UTF-8 name (RFC 6266 / 5987)."""
    fallback = "".join(
        char if 0x20 <= ord(char) < 0x7F and char not in '"\\%' else "_" for char in filename
    )
    encoded = urllib.parse.quote(filename, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


@dataclass(frozen=True)
class PresignedUrl:
    url: str
    expires_at: datetime


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    content_type: str | None


@dataclass(frozen=True)
class WrittenObject:
    size: int
    sha256: str


def _error(exc: Exception, key: str) -> StorageError:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404", "NotFound"):
            return ObjectMissing(key)
        return StorageError(f"S3 refused the request for {key!r}: {code or exc}")
    return StorageError(f"S3 did not answer for {key!r}: {type(exc).__name__}")


@dataclass(frozen=True)
class Storage:
    """The bucket: presigned URLs, heads, streaming reads and writes, deletes."""

    s3: S3Settings
    files: FilesSettings

    @classmethod
    def from_settings(cls, settings: Settings) -> Storage:
        return cls(s3=settings.s3, files=settings.files)

    @property
    def client(self) -> S3Client:
        return get_client(self.s3)

    @property
    def bucket(self) -> str:
        return self.s3.bucket

    def _presigner(self) -> S3Client:
        if self.files.public_endpoint_url is None:
            return self.client
        return get_client(
            self.s3.model_copy(update={"endpoint_url": self.files.public_endpoint_url})
        )

    def upload_url(self, key: str, *, content_type: str, size: int) -> PresignedUrl:
        """A PUT URL that only accepts exactly `size` bytes of `content_type` (both are signed)."""
        params = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentType": content_type,
            "ContentLength": size,
        }
        return self._presign("put_object", params, self.files.upload_url_ttl_s)

    def download_url(self, key: str, *, filename: str | None = None) -> PresignedUrl:
        """A GET URL; with `filename`, S3 answers with it as the attachment name."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if filename is not None:
            params["ResponseContentDisposition"] = content_disposition(filename)
        return self._presign("get_object", params, self.files.download_url_ttl_s)

    def _presign(self, operation: str, params: dict[str, Any], ttl_s: int) -> PresignedUrl:
        """Sign locally (no request is made); fails only without usable credentials."""
        try:
            url = self._presigner().generate_presigned_url(
                operation, Params=params, ExpiresIn=ttl_s
            )
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, str(params["Key"])) from exc
        return PresignedUrl(url, utc_now() + timedelta(seconds=ttl_s))

    def head(self, key: str) -> ObjectInfo | None:
        """The object's size and type, or None when it does not exist."""
        try:
            found = self.client.head_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            error = _error(exc, key)
            if isinstance(error, ObjectMissing):
                return None
            raise error from exc
        return ObjectInfo(size=found["ContentLength"], content_type=found.get("ContentType"))

    def open(self, key: str) -> ObjectReader:
        """Stream the object: a raw binary reader that fetches as it is read."""
        try:
            found = self.client.get_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, key) from exc
        return ObjectReader(found["Body"], key=key)

    def list_keys(self, prefix: str, *, limit: int) -> tuple[list[str], bool]:
        """Up to `limit` (at most 1000) keys under `prefix`, and whether more follow."""
        try:
            found = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=limit)
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, prefix) from exc
        keys = [item["Key"] for item in found.get("Contents", []) if "Key" in item]
        return keys, bool(found.get("IsTruncated"))

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, key) from exc

    def copy(self, source: str, destination: str) -> None:
        """Copy an object within the bucket on the S3 side (its bytes never reach us); one
        request up to 5 GiB, the largest object `files.max_upload_bytes` allows."""
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=destination,
                CopySource={"Bucket": self.bucket, "Key": source},
                MetadataDirective="COPY",
            )
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, source) from exc

    def writer(self, key: str, *, content_type: str, spool: bool = False) -> ObjectWriter:
        return ObjectWriter(self, key, content_type=content_type, spool=spool)

    def delete(self, key: str) -> None:
        """Delete the object; deleting one that does not exist is not an error."""
        self.delete_many([key])

    def delete_many(self, keys: Iterable[str]) -> None:
        batch = list(dict.fromkeys(keys))
        for start in range(0, len(batch), _DELETE_BATCH):
            chunk = batch[start : start + _DELETE_BATCH]
            try:
                answer = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
                )
            except (ClientError, BotoCoreError) as exc:
                raise _error(exc, chunk[0]) from exc
            failed = [e for e in answer.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if failed:
                raise StorageError(f"S3 did not delete {len(failed)} objects: {failed[0]}")


class ObjectReader(io.RawIOBase):
    """A raw reader over an S3 response body that counts and hashes the bytes read."""

    def __init__(self, body: Any, *, key: str) -> None:
        super().__init__()
        self._body = body
        self._key = key
        self._sha256 = hashlib.sha256()
        self.bytes_read = 0
        self.at_end = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data: bytes = self._body.read(len(view))
        except (BotoCoreError, OSError) as exc:
            raise StorageError(f"reading {self._key!r} failed: {type(exc).__name__}") from exc
        count = len(data)
        if count == 0:
            self.at_end = True
            return 0
        view[:count] = data
        self._sha256.update(data)
        self.bytes_read += count
        return count

    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class _MemoryBuffer:
    """Part bytes kept in memory and handed to botocore as they are (no copy)."""

    def __init__(self) -> None:
        self._data = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._data += data

    def take(self) -> bytearray:
        data, self._data = self._data, bytearray()
        return data

    def close(self) -> None:
        self._data = bytearray()


class _DiskBuffer:
    """Part bytes spooled to a temporary file: at most `SPOOL_MEMORY_BYTES` in memory."""

    def __init__(self) -> None:
        self._file = self._new()

    @staticmethod
    def _new() -> IO[bytes]:
        return tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._file.write(data)

    def take(self) -> IO[bytes]:
        data, self._file = self._file, self._new()
        data.seek(0)
        return data

    def close(self) -> None:
        self._file.close()


class ObjectWriter:
    """A write-only stream into one object, in bounded memory; its methods block (network).

    Bytes are buffered up to `part_size` (in memory, or with `spool=True` in a temporary file);
    a small object is one PUT on `close()`, a larger one a multipart upload. Not seekable (zipfile
    writes data descriptors then). Size and sha256 are computed as it goes. `abort()` (or leaving
    a `with` block by an exception) discards it all.
    """

    def __init__(
        self, storage: Storage, key: str, *, content_type: str, spool: bool = False
    ) -> None:
        self._storage = storage
        self.key = key
        self.content_type = content_type
        self._part_size = storage.files.part_size_bytes
        self._buffer: _MemoryBuffer | _DiskBuffer = _DiskBuffer() if spool else _MemoryBuffer()
        self._buffered = 0
        self._sha256 = hashlib.sha256()
        self._size = 0
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self.closed = False

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if exc_type is not None:
            self.abort()
        elif not self.closed:
            self.close()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Take `data`; once a part's worth is buffered it is uploaded (blocks meanwhile)."""
        if self.closed:
            raise ValueError("write to a closed ObjectWriter")
        self._buffer.write(data)
        self._sha256.update(data)
        self._size += len(data)
        self._buffered += len(data)
        if self._buffered >= self._part_size:
            self._upload_part()
        return len(data)

    def flush(self) -> None:
        """Nothing to do: parts go up when full, the rest on `close()`."""

    def _take(self) -> bytearray | IO[bytes]:
        self._buffered = 0
        return self._buffer.take()

    def _upload_part(self) -> None:
        client, bucket = self._storage.client, self._storage.bucket
        # The whole buffer is the part (>= 5 MiB but for the last), handed over without a copy.
        body = self._take()
        number = len(self._parts) + 1
        try:
            if self._upload_id is None:
                created = client.create_multipart_upload(
                    Bucket=bucket, Key=self.key, ContentType=self.content_type
                )
                self._upload_id = created["UploadId"]
            answer = client.upload_part(
                Bucket=bucket,
                Key=self.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,  # type: ignore[arg-type]  # botocore takes a bytearray as it is
            )
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, self.key) from exc
        finally:
            if not isinstance(body, bytearray):
                body.close()
        self._parts.append({"ETag": answer["ETag"], "PartNumber": number})

    def close(self) -> WrittenObject:
        """Finish the object: what was written is now stored under `key`."""
        if self.closed:
            raise ValueError("ObjectWriter is already closed")
        client, bucket = self._storage.client, self._storage.bucket
        try:
            if self._upload_id is None:
                body = self._take()
                try:
                    client.put_object(
                        Bucket=bucket,
                        Key=self.key,
                        Body=body,  # type: ignore[arg-type]  # a bytearray is taken as it is
                        ContentType=self.content_type,
                    )
                finally:
                    if not isinstance(body, bytearray):
                        body.close()
            else:
                if self._buffered:
                    self._upload_part()
                client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=self.key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        except (ClientError, BotoCoreError) as exc:
            self.abort()
            raise _error(exc, self.key) from exc
        except BaseException:
            self.abort()
            raise
        self.closed = True
        self._buffer.close()
        return WrittenObject(size=self._size, sha256=self._sha256.hexdigest())

    def abort(self) -> None:
        """Discard everything written; safe to call more than once (errors are not raised)."""
        self.closed = True
        self._buffer.close()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            try:
                self._storage.client.abort_multipart_upload(
                    Bucket=self._storage.bucket, Key=self.key, UploadId=upload_id
                )
            except (ClientError, BotoCoreError) as exc:
                # An abandoned multipart upload costs storage until a lifecycle rule removes it.
                log.warning(
                    "could not abort a multipart upload",
                    extra={"key": self.key, "error": repr(exc)},
                )
