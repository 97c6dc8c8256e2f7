"""The console's files under `/console`, and the S3 origins its pages may reach."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from app.core.config import Settings

STATIC_DIR = Path(__file__).parent / "static"
PREFIX = "/console"
# S3 of AWS (no endpoint set): bucket hosts under this domain, virtual or path style.
_AWS_ORIGIN = "https://*.amazonaws.com"


class ConsoleFiles(StaticFiles):
    """Starlette's static files, revalidated on every load (`no-cache` with their ETag): a new
    release is picked up at once, and an unchanged file costs a 304."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["cache-control"] = "no-cache"
        return response


def console_files() -> ConsoleFiles:
    """The ASGI app to mount at `PREFIX`: `index.html` for the directory itself."""
    return ConsoleFiles(directory=STATIC_DIR, html=True)


def storage_origins(settings: Settings) -> tuple[str, ...]:
    """Where the browser sends presigned uploads and loads downloads from: the address presigned
    URLs are signed for."""
    endpoint = settings.files.public_endpoint_url or settings.s3.endpoint_url
    if endpoint is None:
        return (_AWS_ORIGIN,)
    parts = urlsplit(endpoint)
    return (f"{parts.scheme}://{parts.netloc}",)
