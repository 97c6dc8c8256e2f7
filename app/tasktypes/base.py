"""What a task type is and what its handler gets: `TaskType`, `TaskContext` and the task errors.

Built-in handlers and plugins import this module (and `app.tasktypes.filerefs` for files); the
registry imports them, never the other way round.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from app.tasktypes.filerefs import FileAccess, InputFile, OutputFile

Handler = Callable[[Any, "TaskContext"], Awaitable[Any]] | Callable[[Any, "TaskContext"], Any]


class TaskError(Exception):
    """A handler's failure with a stable `type` for clients; retried only when `retryable`."""

    type: str = "task_error"
    retryable: bool = False

    def __init__(self, message: str, *, type: str | None = None, retryable: bool | None = None):
        super().__init__(message)
        if type is not None:
            self.type = type
        if retryable is not None:
            self.retryable = retryable


class RetryableTaskError(TaskError):
    type, retryable = "transient", True


class TaskInputError(TaskError):
    type, retryable = "input", False


class TaskCanceled(Exception):
    """Raised inside a handler when its task is canceled or its attempt ran out of time."""


@dataclass
class TaskContext:
    """What a handler may know and do: ids, the attempt number, progress, cancellation, and the
    files of its project."""

    task_id: uuid.UUID
    project_id: uuid.UUID
    attempt: int
    max_attempts: int
    idempotency_key: str | None
    files: FileAccess | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _progress: tuple[float, str | None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def report_progress(self, fraction: float, message: str | None = None) -> None:
        """Record progress (0..1, and a short message); the next heartbeat makes it visible."""
        with self._lock:
            self._progress = (
                min(max(float(fraction), 0.0), 1.0),
                message[:500] if message else None,
            )

    def take_progress(self) -> tuple[float, str | None] | None:
        with self._lock:
            progress, self._progress = self._progress, None
            return progress

    @property
    def stopping(self) -> bool:
        """True once the task was canceled or its time is up: long handlers should return soon."""
        return self._stop.is_set()

    def raise_if_stopping(self) -> None:
        """Cooperative stop point for handlers that loop."""
        if self._stop.is_set():
            raise TaskCanceled

    def stop(self) -> None:
        self._stop.set()

    def open_file(self, file_id: uuid.UUID) -> AbstractContextManager[InputFile]:
        """Read a file of this task's project (sync handlers): `with context.open_file(id) as f`."""
        return self._file_access().open(file_id)

    def create_file(
        self, *, filename: str, content_type: str
    ) -> AbstractContextManager[OutputFile]:
        """Write a new file in this task's project (sync handlers); it is kept for the output
        retention period. After the `with` block, `out.info` describes it."""
        return self._file_access().create(filename=filename, content_type=content_type)

    def _file_access(self) -> FileAccess:
        if self.files is None:
            raise TaskError("files are not available to this task", type="internal")
        return self.files


@dataclass(frozen=True)
class TaskType:
    name: str
    description: str
    input_model: type[BaseModel]
    handler: Handler
    default_timeout_s: int = 300
    default_max_attempts: int = 3
    # Exceptions (besides a retryable `TaskError`) that mean "try again later".
    retry_on: tuple[type[BaseException], ...] = ()

    def input_schema(self) -> dict[str, Any]:
        return self.input_model.model_json_schema()

    def parse_input(self, data: dict[str, Any]) -> BaseModel:
        return self.input_model.model_validate(data)

    async def run(self, data: dict[str, Any], context: TaskContext) -> Any:
        """Validate `data` and run the handler; sync handlers run in a thread, off the loop."""
        try:
            parsed = self.parse_input(data)
        except ValidationError as exc:
            raise TaskInputError(str(exc)) from exc
        if inspect.iscoroutinefunction(self.handler):
            return await self.handler(parsed, context)
        return await asyncio.to_thread(self.handler, parsed, context)

    def is_retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, TaskError):
            return exc.retryable
        return isinstance(exc, self.retry_on)
