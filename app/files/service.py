"""Files: presigned and direct uploads, reads with presigned links, deletes, retention. What
workers do with files is `worker_side.py`; task results kept in S3, `results.py`.

A file row is `pending` until its object is known to exist with the recorded size, then `ready`.
Every object key is `projects/<project id>/{uploads,outputs}/<file id>`; every lookup is by
project, so no route or task reaches another project's objects. S3 calls run in threads.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.principal import Principal
from app.core.config import FilesSettings
from app.core.db import transaction, utc_now
from app.core.pagination import decode_keyset, keyset, page_of
from app.events import service as event_service
from app.files.exceptions import (
    FileNotFound,
    FileNotUploaded,
    FileTooLarge,
    StorageUnavailable,
)
from app.files.models import File, FileStatus
from app.files.repository import FileRepository
from app.files.schemas import DEFAULT_CONTENT_TYPE, FileCreate
from app.files.staging import keys_of, promote, staging_key
from app.files.storage import (
    READ_CHUNK_BYTES,
    PresignedUrl,
    Storage,
    StorageError,
    object_key,
)
from app.files.upload import FORM_OVERHEAD_BYTES, ReceivedFile, receive_file
from app.projects import access as project_access
from app.projects.access import ProjectAccess
from app.projects.models import Role
from app.worker.enqueue import enqueue
from app.worker.names import Job, Queue

log = logging.getLogger(__name__)

UPLOADS = "uploads"
OUTPUTS = "outputs"


def upload_expiry(settings: FilesSettings, now: datetime) -> datetime | None:
    days = settings.upload_retention_days
    return None if days is None else now + timedelta(days=days)


def record(
    session: AsyncSession,
    kind: str,
    file: File,
    *,
    actor: Principal | None,
    **data: object,
) -> None:
    event_service.record(
        session,
        kind,
        project_id=file.project_id,
        subject_id=file.id,
        actor=actor,
        data={"filename": file.filename, "size": file.size, **data},
    )


# --- the API side ------------------------------------------------------------------------------


async def create_upload(
    session: AsyncSession,
    *,
    access: ProjectAccess,
    data: FileCreate,
    storage: Storage,
) -> tuple[File, PresignedUrl]:
    """Announce a file and sign a PUT for exactly its size and type; it is `pending` until
    `complete_upload` (or a task using it) finds the object. `access` is `member` or above."""
    project_id = access.project_id
    limit = storage.files.max_upload_bytes
    if data.size > limit:
        raise FileTooLarge(f"files may be at most {limit} bytes; this one declares {data.size}")
    file_id, now = uuid.uuid4(), utc_now()
    file = await FileRepository(session).add(
        File(
            id=file_id,
            project_id=project_id,
            key=object_key(project_id, UPLOADS, str(file_id)),
            filename=data.filename,
            content_type=data.content_type,
            size=data.size,
            status=FileStatus.pending,
            created_by=access.actor_id,
            created_at=now,
            expires_at=now + timedelta(seconds=storage.files.pending_upload_ttl_s),
        )
    )
    record(session, "file.created", file, actor=access.principal, content_type=data.content_type)
    try:  # in a thread: the first signature may fetch credentials (instance metadata)
        url = await asyncio.to_thread(
            storage.upload_url, staging_key(file), content_type=file.content_type, size=file.size
        )
    except StorageError as exc:
        raise StorageUnavailable(str(exc)) from None
    return file, url


async def upload(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    access: ProjectAccess,
    content_type: str | None,
    content_length: int | None,
    body: AsyncIterator[bytes],
    storage: Storage,
) -> File:
    """Stream a `multipart/form-data` file part to S3 as it arrives; the file is `ready` at once,
    with its size and sha256. `access` is `member` or above. The body may take long to arrive:
    a connection is held only once the bytes are stored, to write the file row."""
    project_id = access.project_id
    limit = storage.files.max_direct_upload_bytes
    if content_length is not None and content_length > limit + FORM_OVERHEAD_BYTES:
        raise FileTooLarge(
            f"files:upload takes files up to {limit} bytes; use POST /v1/projects/{{id}}/files"
            " for larger ones"
        )
    file_id = uuid.uuid4()
    key = object_key(project_id, UPLOADS, str(file_id))
    # Spooled to disk: concurrent uploads cost the API about 1 MiB of memory each, not a part.
    writer = storage.writer(key, content_type=DEFAULT_CONTENT_TYPE, spool=True)
    pending = bytearray()

    def on_file(part: ReceivedFile) -> None:
        writer.content_type = part.content_type  # known before its first byte

    async def sink(data: bytes) -> None:
        pending.extend(data)
        if len(pending) >= READ_CHUNK_BYTES:  # the writer's disk and network I/O: in a thread
            chunk = bytes(pending)
            pending.clear()
            await asyncio.to_thread(writer.write, chunk)

    try:
        received = await receive_file(
            content_type, body, sink, max_file_bytes=limit, on_file=on_file
        )
        await asyncio.to_thread(writer.write, bytes(pending))
        written = await asyncio.to_thread(writer.close)
    except StorageError as exc:
        await asyncio.to_thread(writer.abort)
        raise StorageUnavailable(str(exc)) from None
    except BaseException:
        await asyncio.to_thread(writer.abort)
        raise
    now = utc_now()
    async with transaction(sessionmaker) as session:
        file = await FileRepository(session).add(
            File(
                id=file_id,
                project_id=project_id,
                key=key,
                filename=received.filename,
                content_type=received.content_type,
                size=written.size,
                sha256=written.sha256,
                status=FileStatus.ready,
                created_by=access.actor_id,
                created_at=now,
                expires_at=upload_expiry(storage.files, now),
            )
        )
        record(session, "file.uploaded", file, actor=access.principal, sha256=file.sha256)
        record(session, "file.ready", file, actor=access.principal, sha256=file.sha256)
    return file


async def get_with_role(
    session: AsyncSession, *, principal: Principal, file_id: uuid.UUID, role: Role = Role.viewer
) -> File:
    """The file, if the caller has `role` in its project; `FileNotFound` for outsiders."""
    file = await FileRepository(session).get(file_id)
    if file is None:
        raise FileNotFound()
    await project_access.require_role(
        session,
        project_id=file.project_id,
        principal=principal,
        role=role,
        hidden_as=FileNotFound,
    )
    return file


async def complete_upload(
    session: AsyncSession,
    *,
    principal: Principal,
    file_id: uuid.UUID,
    storage: Storage,
) -> File:
    """Check that a presigned upload arrived with the declared size and make the file `ready`;
    its sha256 is computed by a worker soon after. Calling it again is harmless: only the call
    that makes the file ready (a guarded UPDATE) queues the digest, which reads the whole object."""
    file = await get_with_role(session, principal=principal, file_id=file_id, role=Role.member)
    if file.status == FileStatus.pending:
        if file.task_id is not None:
            raise FileNotUploaded("a task is still writing this file")
        try:
            found = await asyncio.to_thread(promote, storage, file)
        except StorageError as exc:
            raise StorageUnavailable(str(exc)) from None
        if found is None:
            raise FileNotUploaded("nothing was uploaded yet: PUT the bytes to `upload_url` first")
        if found.size != file.size:
            raise FileNotUploaded(
                f"the upload has {found.size} bytes, not the declared {file.size}; PUT it again"
            )
        ready = await FileRepository(session).mark_ready(
            file.id,
            size=file.size,
            sha256=None,
            expires_at=upload_expiry(storage.files, utc_now()),
        )
        if ready is not None:
            file = ready
            record(session, "file.uploaded", file, actor=principal)
            record(session, "file.ready", file, actor=principal)
            enqueue(session, Job.digest_file, str(file_id), queue=Queue.low)
    return file


async def list_files(
    session: AsyncSession,
    *,
    access: ProjectAccess,
    status: FileStatus | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[File], str | None]:
    """A page of the project's files, newest first."""
    rows = await FileRepository(session).list_for_project(
        access.project_id, status=status, after=decode_keyset(cursor), limit=limit + 1
    )
    return page_of(rows, limit=limit, position=lambda file: keyset(file.created_at, file.id))


async def delete_file(
    session: AsyncSession, *, principal: Principal, file_id: uuid.UUID, storage: Storage
) -> None:
    """Delete the row and the object (the object first: a failure leaves the row for a retry)."""
    file = await get_with_role(session, principal=principal, file_id=file_id, role=Role.member)
    deleted = await FileRepository(session).delete(file.id)
    if deleted is None:
        raise FileNotFound()
    try:
        await asyncio.to_thread(storage.delete_many, keys_of(deleted))
    except StorageError as exc:
        raise StorageUnavailable(str(exc)) from None
    record(session, "file.deleted", deleted, actor=principal, reason="deleted")


async def download_links(storage: Storage, files: Sequence[File]) -> list[PresignedUrl | None]:
    """Presigned GETs for the ready ones (signing is local, but its first use may fetch
    credentials, so it runs off the loop)."""

    def sign() -> list[PresignedUrl | None]:
        return [
            storage.download_url(file.key, filename=file.filename)
            if file.status == FileStatus.ready
            else None
            for file in files
        ]

    try:
        return await asyncio.to_thread(sign) if files else []
    except StorageError as exc:
        raise StorageUnavailable(str(exc)) from None


async def missing_in_project(
    session: AsyncSession, *, project_id: uuid.UUID, file_ids: Collection[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of `file_ids` are not files of the project (for task input checks)."""
    if not file_ids:
        return set()
    found = await FileRepository(session).ids_in_project(project_id, file_ids)
    return set(file_ids) - found


async def delete_expired(
    session: AsyncSession, *, storage: Storage, now: datetime, limit: int
) -> int:
    """Delete up to `limit` files past their `expires_at`: the objects, then (on commit) the rows.
    Idempotent: if the commit fails, the next sweep deletes the same objects again harmlessly."""
    files = await FileRepository(session).delete_expired(now=now, limit=limit)
    if files:
        keys = [key for file in files for key in keys_of(file)]
        await asyncio.to_thread(storage.delete_many, keys)
    for file in files:
        record(session, "file.deleted", file, actor=None, reason="expired")
    return len(files)
