"""`file.checksum`: SHA-256, MD5 and size of a file, streamed in constant memory."""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.files.storage import READ_CHUNK_BYTES
from app.tasktypes.base import TaskContext
from app.tasktypes.filerefs import FileRef


class ChecksumInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: FileRef


def checksum(data: ChecksumInput, context: TaskContext) -> dict[str, Any]:
    """SHA-256, MD5 and size of a file, read once in 1 MiB chunks."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    size = 0
    with context.open_file(data.file_id) as source:
        total = source.info.size
        while chunk := source.stream.read(READ_CHUNK_BYTES):
            context.raise_if_stopping()
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
            if total:
                context.report_progress(size / total)
    return {
        "file_id": str(data.file_id),
        "size": size,
        "sha256": sha256.hexdigest(),
        "md5": md5.hexdigest(),
    }
