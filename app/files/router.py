"""File routes: presigned and direct uploads, the upload confirmation, reads, lists, deletes."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status

from app.auth.dependencies import CurrentPrincipal
from app.core.dependencies import SessionDep, SessionmakerDep
from app.core.errors import Unauthorized, error_responses
from app.core.pagination import CursorQuery, InvalidCursor, LimitQuery, Page
from app.files import service as file_service
from app.files.dependencies import StorageDep
from app.files.exceptions import (
    FileNotFound,
    FileNotUploaded,
    FileTooLarge,
    InvalidUpload,
    StorageUnavailable,
    UnsupportedUploadType,
)
from app.files.models import FileStatus
from app.files.schemas import FileCreate, FileRead, FileUpload
from app.projects.dependencies import DetachedMemberAccess, MemberAccess, ViewerAccess
from app.projects.exceptions import InsufficientRole, ProjectNotFound

router = APIRouter(tags=["files"])

# The body `upload_file` streams itself, by name in the document's components (`main.py`).
UPLOAD_FORM_SCHEMA = {
    "title": "FileUploadForm",
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "The file. Its part's `filename` and `Content-Type` (any media type, "
            "such as `text/csv`) become the file's name and media type.",
        }
    },
    "additionalProperties": False,
}
_MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"$ref": "#/components/schemas/FileUploadForm"},
                "encoding": {"file": {"contentType": "application/octet-stream"}},
            }
        },
    }
}


@router.post(
    "/projects/{project_id}/files",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(
        Unauthorized, InsufficientRole, ProjectNotFound, FileTooLarge, StorageUnavailable
    ),
)
async def create_file(
    data: FileCreate, access: MemberAccess, session: SessionDep, storage: StorageDep
) -> FileUpload:
    """Announce a file and get a presigned URL to PUT its bytes to S3 directly.

    The URL accepts exactly `size` bytes with exactly this `Content-Type` (both are signed) for
    at most 5 minutes. Then call `POST /v1/files/{id}/complete`; the file is `ready` from there
    (a task that uses it first checks the same).
    """
    file, url = await file_service.create_upload(session, access=access, data=data, storage=storage)
    return FileUpload(
        id=file.id,
        key=file.key,
        upload_url=url.url,
        expires_at=url.expires_at,
        headers={"Content-Type": file.content_type, "Content-Length": str(file.size)},
    )


@router.post(
    "/projects/{project_id}/files:upload",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_MULTIPART_BODY,
    responses=error_responses(
        Unauthorized,
        InsufficientRole,
        ProjectNotFound,
        FileTooLarge,
        UnsupportedUploadType,
        InvalidUpload,
        StorageUnavailable,
    ),
)
async def upload_file(
    request: Request,
    access: DetachedMemberAccess,
    sessionmaker: SessionmakerDep,
    storage: StorageDep,
) -> FileRead:
    """Upload a small file through the API (`multipart/form-data`, one part named `file`).

    The file streams to S3 as it arrives and is `ready` at once, with its size and sha256.
    Larger than `TASKGATE_FILES__MAX_DIRECT_UPLOAD_BYTES` (10 MiB by default) is a 413: use
    `POST /v1/projects/{id}/files` for those.
    """
    length = request.headers.get("content-length")
    file = await file_service.upload(
        sessionmaker,
        access=access,
        content_type=request.headers.get("content-type"),
        content_length=int(length) if length and length.isdigit() else None,
        body=request.stream(),
        storage=storage,
    )
    [link] = await file_service.download_links(storage, [file])
    return FileRead.of(file, link)


@router.get(
    "/projects/{project_id}/files",
    responses=error_responses(Unauthorized, ProjectNotFound, InvalidCursor, StorageUnavailable),
)
async def list_files(
    access: ViewerAccess,
    session: SessionDep,
    storage: StorageDep,
    status: FileStatus | None = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[FileRead]:
    """The project's files (uploads and task outputs), newest first, with download links."""
    files, next_cursor = await file_service.list_files(
        session,
        access=access,
        status=status,
        limit=limit,
        cursor=cursor,
    )
    links = await file_service.download_links(storage, files)
    return Page(
        items=[FileRead.of(file, link) for file, link in zip(files, links, strict=True)],
        next_cursor=next_cursor,
    )


@router.get(
    "/files/{file_id}", responses=error_responses(Unauthorized, FileNotFound, StorageUnavailable)
)
async def get_file(
    file_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal, storage: StorageDep
) -> FileRead:
    """The file's metadata and, once it is `ready`, a presigned `download_url` (at most 15 min)."""
    file = await file_service.get_with_role(session, principal=principal, file_id=file_id)
    [link] = await file_service.download_links(storage, [file])
    return FileRead.of(file, link)


@router.post(
    "/files/{file_id}/complete",
    responses=error_responses(
        Unauthorized, InsufficientRole, FileNotFound, FileNotUploaded, StorageUnavailable
    ),
)
async def complete_file(
    file_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    storage: StorageDep,
) -> FileRead:
    """Confirm a presigned upload: 200 and `ready` when the object is there with the declared
    size, 409 `file-not-uploaded` otherwise. Its `sha256` follows shortly (computed by a worker).
    Repeating it is harmless."""
    file = await file_service.complete_upload(
        session, principal=principal, file_id=file_id, storage=storage
    )
    [link] = await file_service.download_links(storage, [file])
    return FileRead.of(file, link)


@router.delete(
    "/files/{file_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(Unauthorized, InsufficientRole, FileNotFound, StorageUnavailable),
)
async def delete_file(
    file_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal, storage: StorageDep
) -> None:
    """Delete the file and its object. Tasks that still refer to it fail with `file_not_found`."""
    await file_service.delete_file(session, principal=principal, file_id=file_id, storage=storage)
