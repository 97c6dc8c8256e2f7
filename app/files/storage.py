"""S3 storage: one boto3 client per process, every key under `projects/<id>/`, calls off the loop."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from app.core.config import S3Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_lock = threading.Lock()
_clients: dict[str, S3Client] = {}


def object_key(project_id: uuid.UUID, *parts: str) -> str:
    """The one place object keys are made: `projects/<project_id>/<part>/<part>…`."""
    if not parts or any(not part or "/" in part or part in (".", "..") for part in parts):
        raise ValueError(f"invalid object key parts: {parts!r}")
    return "/".join(("projects", str(project_id), *parts))


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
    """The process's client for `settings` (boto3 clients are thread-safe, sessions are not)."""
    key = settings.model_dump_json()
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = create_client(settings)
    return client


async def check_bucket(settings: S3Settings) -> None:
    """Raise unless the bucket answers a HEAD request: the readiness check for S3."""
    client = get_client(settings)
    await asyncio.to_thread(client.head_bucket, Bucket=settings.bucket)
