"""The files service's worker side: a task's input files made ready to read, its output files'
rows, and the sha256 digest job."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import FilesSettings
from app.core.db import transaction, utc_now
from app.files import service as file_service
from app.files.exceptions import FileNotFound, FileNotUploaded
from app.files.models import File, FileStatus
from app.files.repository import FileRepository
from app.files.staging import promote
from app.files.storage import READ_CHUNK_BYTES, ObjectMissing, Storage, object_key

log = logging.getLogger(__name__)


async def resolve_for_task(
    session: AsyncSession, *, project_id: uuid.UUID, file_id: uuid.UUID, storage: Storage
) -> File:
    """A file of the task's project, ready to read. A pending upload whose object has arrived
    with the declared size becomes ready here (first use without `complete`)."""
    repository = FileRepository(session)
    file = await repository.get_in_project(project_id, file_id)
    if file is None:
        raise FileNotFound(f"no file {file_id} in this project")
    if file.status == FileStatus.ready:
        return file
    if file.task_id is not None:
        raise FileNotUploaded(f"file {file_id} is still being written by another task")
    found = await asyncio.to_thread(promote, storage, file)
    if found is None or found.size != file.size:
        raise FileNotUploaded(f"file {file_id} was not uploaded (or not with its declared size)")
    ready = await repository.mark_ready(
        file.id,
        size=file.size,
        sha256=None,
        expires_at=file_service.upload_expiry(storage.files, utc_now()),
    )
    if ready is None:  # made ready meanwhile by `complete`
        return await repository.get(file_id) or file
    file_service.record(session, "file.ready", ready, actor=None, checked_by="task")
    return ready


async def start_output(
    session: AsyncSession,
    *,
    project_id: uuid.UUID,
    task_id: uuid.UUID,
    filename: str,
    content_type: str,
    settings: FilesSettings,
) -> File:
    """The row of a file a task is about to write: pending, and already due for retention, so
    an attempt that dies halfway leaves nothing behind for good."""
    file_id, now = uuid.uuid4(), utc_now()
    return await FileRepository(session).add(
        File(
            id=file_id,
            project_id=project_id,
            key=object_key(project_id, file_service.OUTPUTS, str(file_id)),
            filename=filename,
            content_type=content_type,
            size=0,
            status=FileStatus.pending,
            task_id=task_id,
            created_at=now,
            expires_at=now + timedelta(days=settings.output_retention_days),
        )
    )


async def finish_output(session: AsyncSession, *, file: File, size: int, sha256: str) -> File:
    ready = await FileRepository(session).mark_ready(
        file.id, size=size, sha256=sha256, expires_at=file.expires_at
    )
    if ready is None:
        raise FileNotFound(f"output file {file.id} was deleted while it was written")
    file_service.record(
        session, "file.ready", ready, actor=None, sha256=sha256, task_id=str(file.task_id)
    )
    return ready


async def record_sha256(session: AsyncSession, *, file_id: uuid.UUID, sha256: str) -> None:
    await FileRepository(session).record_sha256(file_id, sha256)


def _hash_object(storage: Storage, key: str) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with storage.open(key) as reader:
        while chunk := reader.read(READ_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


async def digest(
    sessionmaker: async_sessionmaker[AsyncSession], storage: Storage, file_id: uuid.UUID
) -> str | None:
    """Compute and record a ready file's sha256 (a worker job; idempotent). None if there is
    nothing to do or the object is gone."""
    async with transaction(sessionmaker) as session:
        file = await FileRepository(session).get(file_id)
    if file is None or file.status != FileStatus.ready or file.sha256 is not None:
        return None
    try:
        size, sha256 = await asyncio.to_thread(_hash_object, storage, file.key)
    except ObjectMissing:
        log.warning("file object is missing", extra={"file_id": str(file_id)})
        return None
    if size != file.size:
        log.warning(
            "file object size differs from its row",
            extra={"file_id": str(file_id), "size": size, "recorded": file.size},
        )
        return None
    async with transaction(sessionmaker) as session:
        await record_sha256(session, file_id=file_id, sha256=sha256)
    return sha256
