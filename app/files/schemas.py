"""File request and response bodies, and the checks on names and media types."""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.core.types import JsonInt
from app.files.models import File, FileStatus
from app.files.storage import PresignedUrl

MAX_FILENAME_LENGTH = 255
MAX_CONTENT_TYPE_LENGTH = 255
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_TCHARS = r"[A-Za-z0-9!#$&^_.+-]+"
# `type/subtype` with optional `; name=value` parameters: safe to send back as a header.
# Matched whole (`fullmatch`): `$` would let a trailing newline through, into a header.
_CONTENT_TYPE = re.compile(
    rf'{_TCHARS}/{_TCHARS}(?:[ \t]*;[ \t]*{_TCHARS}=(?:{_TCHARS}|"[^"\\\x00-\x1f\x7f]*"))*'
)


def check_filename(value: str) -> str:
    """A plain file name: no path separators, no control characters, not `.` or `..`."""
    if not value or len(value) > MAX_FILENAME_LENGTH:
        raise ValueError(f"must be 1-{MAX_FILENAME_LENGTH} characters")
    if "/" in value or "\\" in value or value in (".", ".."):
        raise ValueError("must be a file name, not a path")
    # Cf: format characters, invisible but reordering or hiding text (U+202E turns
    # `txt.exe` into what reads as `exe.txt`; zero-width spaces make look-alike names).
    if any(unicodedata.category(char) in ("Cc", "Cf", "Cs") for char in value):
        raise ValueError("must not contain control or invisible formatting characters")
    return value


def check_content_type(value: str) -> str:
    """A media type such as `text/csv` or `text/csv; charset=utf-8`."""
    if len(value) > MAX_CONTENT_TYPE_LENGTH or not _CONTENT_TYPE.fullmatch(value):
        raise ValueError("must be a media type such as `image/png` or `text/csv; charset=utf-8`")
    return value


FileName = Annotated[
    str,
    Field(examples=["photo.png"], description="A plain file name (no path), 1-255 characters."),
    AfterValidator(check_filename),
]
ContentType = Annotated[
    str,
    Field(
        examples=["image/png"],
        description="The media type the file is stored and served as.",
        # Documented, checked by `check_content_type` (whole-string match, as here).
        json_schema_extra={
            "pattern": f"^{_CONTENT_TYPE.pattern}$",
            "maxLength": MAX_CONTENT_TYPE_LENGTH,
        },
    ),
    AfterValidator(check_content_type),
]


class FileCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: FileName
    content_type: ContentType
    size: JsonInt = Field(
        ge=0, description="Exact size in bytes; the upload URL accepts only this."
    )


class FileUpload(BaseModel):
    """Where to PUT the bytes, then `POST /v1/files/{id}/complete`."""

    id: uuid.UUID
    key: str
    upload_url: str
    expires_at: datetime = Field(description="When `upload_url` stops working (at most 5 min).")
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(
        description="Headers the PUT must carry exactly (they are part of the signature)."
    )


class FileRead(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    key: str
    filename: str
    content_type: str
    size: int
    sha256: str | None = Field(description="Hex SHA-256 of the bytes; null until computed.")
    status: FileStatus
    task_id: uuid.UUID | None = Field(description="The task that wrote this file, if any.")
    created_at: datetime
    expires_at: datetime | None = Field(description="When retention deletes it (null: never).")
    download_url: str | None = Field(description="Presigned GET (at most 15 min); null if pending.")
    download_url_expires_at: datetime | None

    @classmethod
    def of(cls, file: File, download: PresignedUrl | None = None) -> FileRead:
        return cls(
            id=file.id,
            project_id=file.project_id,
            key=file.key,
            filename=file.filename,
            content_type=file.content_type,
            size=file.size,
            sha256=file.sha256,
            status=file.status,
            task_id=file.task_id,
            created_at=file.created_at,
            expires_at=file.expires_at,
            download_url=download.url if download else None,
            download_url_expires_at=download.expires_at if download else None,
        )
