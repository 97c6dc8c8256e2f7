"""The files of one task's project, as task handlers see them (`context.open_file` / `create_file`).

Handlers that touch files are sync and run in a thread; S3 is called directly from that thread,
and database steps are sent to the worker's event loop (`run_coroutine_threadsafe`), each in its
own short transaction. Every lookup is scoped to the task's project: a file id of another project
is "not found", exactly like an id that never existed.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import transaction
from app.files import worker_side
from app.files.exceptions import FileNotFound, FileNotUploaded
from app.files.models import File
from app.files.schemas import check_content_type, check_filename
from app.files.storage import (
    READ_CHUNK_BYTES,
    ObjectMissing,
    ObjectWriter,
    Storage,
    StorageError,
    WrittenObject,
)
from app.tasktypes.base import RetryableTaskError, TaskCanceled, TaskError
from app.tasktypes.filerefs import FileInfo, InputFile

T = TypeVar("T")


def _on_an_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _info(file: File) -> FileInfo:
    return FileInfo(
        id=file.id,
        filename=file.filename,
        content_type=file.content_type,
        size=file.size,
        sha256=file.sha256,
    )


class _Output:
    """An output being written: a write-only stream; `info` once the `create` block ended."""

    def __init__(self, file_id: uuid.UUID, writer: ObjectWriter) -> None:
        self.id = file_id
        self.info: FileInfo | None = None
        self._writer = writer

    def write(self, data: bytes, /) -> int:
        return self._writer.write(data)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        """Nothing to do: the file is finished when its `create` block ends."""


class TaskFiles:
    """`FileAccess` for one task: reads and writes files of `project_id` only."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        storage: Storage,
        project_id: uuid.UUID,
        task_id: uuid.UUID,
        loop: asyncio.AbstractEventLoop,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._stopping = stopping
        self._storage = storage
        self._project_id = project_id
        self._task_id = task_id
        self._loop = loop

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a database step on the worker's loop and wait for it (from the handler's thread)."""
        if _on_an_event_loop():
            coro.close()
            raise RuntimeError("file access blocks: use it from a sync handler (run in a thread)")
        if self._stopping() or not self._loop.is_running():
            # The attempt was stopped (cancel, timeout) and may have ended: write nothing more.
            coro.close()
            raise TaskCanceled
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _resolve(self, file_id: uuid.UUID) -> File:
        async with transaction(self._sessionmaker) as session:
            return await worker_side.resolve_for_task(
                session, project_id=self._project_id, file_id=file_id, storage=self._storage
            )

    async def _record_sha256(self, file_id: uuid.UUID, sha256: str) -> None:
        async with transaction(self._sessionmaker) as session:
            await worker_side.record_sha256(session, file_id=file_id, sha256=sha256)

    async def _start(self, filename: str, content_type: str) -> File:
        async with transaction(self._sessionmaker) as session:
            return await worker_side.start_output(
                session,
                project_id=self._project_id,
                task_id=self._task_id,
                filename=filename,
                content_type=content_type,
                settings=self._storage.files,
            )

    async def _finish(self, file: File, written: WrittenObject) -> File:
        async with transaction(self._sessionmaker) as session:
            return await worker_side.finish_output(
                session, file=file, size=written.size, sha256=written.sha256
            )

    @contextmanager
    def open(self, file_id: uuid.UUID) -> Iterator[InputFile]:
        """Stream a file of the project; raises `TaskError` (`file_not_found`, `file_not_ready`)."""
        try:
            file = self._call(self._resolve(file_id))
            raw = self._storage.open(file.key)
        except FileNotFound as exc:
            raise TaskError(exc.detail, type="file_not_found") from None
        except (FileNotUploaded, ObjectMissing) as exc:
            raise TaskError(str(exc), type="file_not_ready") from None
        except StorageError as exc:
            raise RetryableTaskError(str(exc), type="storage_unavailable") from None
        with io.BufferedReader(raw, READ_CHUNK_BYTES) as stream:
            yield InputFile(info=_info(file), stream=stream, bytes_read=lambda: raw.bytes_read)
        if file.sha256 is None and raw.bytes_read == file.size:
            # Read whole without a digest yet (first use of a presigned upload): keep it.
            self._call(self._record_sha256(file.id, raw.sha256()))

    @contextmanager
    def create(self, *, filename: str, content_type: str) -> Iterator[_Output]:
        """Write a new file of the project, kept for the output retention period."""
        try:
            check_filename(filename)
            check_content_type(content_type)
        except ValueError as exc:
            raise TaskError(f"output file: {exc}", type="invalid_output") from None
        file = self._call(self._start(filename, content_type))
        writer = self._storage.writer(file.key, content_type=content_type)
        output = _Output(file.id, writer)
        try:
            yield output
            written = writer.close()
        except StorageError as exc:
            writer.abort()
            raise RetryableTaskError(str(exc), type="storage_unavailable") from None
        except BaseException:
            writer.abort()
            raise
        try:
            ready = self._call(self._finish(file, written))
        except FileNotFound as exc:
            raise TaskError(exc.detail, type="file_not_found") from None
        output.info = _info(ready)
