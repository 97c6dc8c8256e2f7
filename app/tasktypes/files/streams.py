"""What the file task types share: copying a stream in chunks, with stop points and progress."""

from __future__ import annotations

from typing import Any

from app.files.storage import READ_CHUNK_BYTES
from app.tasktypes.base import TaskContext
from app.tasktypes.filerefs import InputFile


def copy_stream(source: InputFile, target: Any, context: TaskContext) -> int:
    """Copy a stream in chunks, honouring cancellation; returns the bytes copied."""
    copied = 0
    while chunk := source.stream.read(READ_CHUNK_BYTES):
        context.raise_if_stopping()
        target.write(chunk)
        copied += len(chunk)
        if source.info.size:
            context.report_progress(copied / source.info.size)
    return copied
