"""`archive.zip`: several files of the project zipped into one new file, streamed into S3."""

from __future__ import annotations

import zipfile
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.files.schemas import FileName
from app.tasktypes.base import TaskContext
from app.tasktypes.filerefs import FileRef
from app.tasktypes.files.streams import copy_stream


class ZipInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_ids: list[FileRef] = Field(min_length=1, max_length=100)
    filename: FileName = "archive.zip"
    compression: Literal["deflate", "store"] = "deflate"

    @field_validator("file_ids")
    @classmethod
    def _distinct(cls, value: list[FileRef]) -> list[FileRef]:
        if len(set(value)) != len(value):
            raise ValueError("each file may appear once")
        return value


def _entry_name(filename: str, taken: set[str]) -> str:
    """The file's name, made unique within the archive (`a.txt`, `a (2).txt`, …)."""
    stem, dot, suffix = filename.rpartition(".")
    if not stem:
        stem, dot, suffix = filename, "", ""
    name, number = filename, 1
    while name in taken:
        number += 1
        name = f"{stem} ({number}){dot}{suffix}"
    taken.add(name)
    return name


def archive_zip(data: ZipInput, context: TaskContext) -> dict[str, Any]:
    """Several files of the project into one zip file, streamed straight into S3."""
    compression = zipfile.ZIP_DEFLATED if data.compression == "deflate" else zipfile.ZIP_STORED
    stamp = datetime.now(UTC).timetuple()[:6]
    entries: list[dict[str, Any]] = []
    taken: set[str] = set()
    with (
        context.create_file(filename=data.filename, content_type="application/zip") as out,
        zipfile.ZipFile(out, "w", compression=compression, allowZip64=True) as archive,
    ):
        for index, file_id in enumerate(data.file_ids):
            with context.open_file(file_id) as source:
                entry = zipfile.ZipInfo(_entry_name(source.info.filename, taken), stamp)
                entry.compress_type = compression
                large = source.info.size >= zipfile.ZIP64_LIMIT
                with archive.open(entry, "w", force_zip64=large) as target:
                    size = copy_stream(source, target, context)
            entries.append({"file_id": str(file_id), "name": entry.filename, "size": size})
            context.report_progress((index + 1) / len(data.file_ids))
    assert out.info is not None  # noqa: S101 (set when the block ends)
    return {
        "file_id": str(out.info.id),
        "filename": out.info.filename,
        "size": out.info.size,
        "sha256": out.info.sha256,
        "entries": entries,
    }
