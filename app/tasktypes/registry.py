"""Task types: a name mapped to a handler, its pydantic input model and its defaults.

Built-ins live in `app.tasktypes.builtin`; other packages add types through the
`taskgate.task_types` entry point group (each entry point is a `TaskType` or a callable returning
an iterable of them).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from app.tasktypes.filerefs import FileAccess, InputFile, OutputFile

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "taskgate.task_types"

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


class UnknownTaskType(LookupError):
    pass


class Registry:
    def __init__(self, types: Iterable[TaskType] = ()) -> None:
        self._types: dict[str, TaskType] = {}
        for task_type in types:
            self.add(task_type)

    def add(self, task_type: TaskType) -> None:
        if task_type.name in self._types:
            raise ValueError(f"task type {task_type.name!r} is registered twice")
        self._types[task_type.name] = task_type

    def get(self, name: str) -> TaskType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownTaskType(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def all(self) -> list[TaskType]:
        return sorted(self._types.values(), key=lambda task_type: task_type.name)


def _load_entry_points(registry: Registry) -> None:
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry_point.load()
            found = loaded() if callable(loaded) and not isinstance(loaded, TaskType) else loaded
            for task_type in [found] if isinstance(found, TaskType) else list(found):
                registry.add(task_type)
        except Exception:  # a broken plugin is logged and skipped; the built-ins still work
            log.exception("could not load task types", extra={"entry_point": entry_point.name})


@lru_cache
def get_registry() -> Registry:
    """Built-in task types plus those of installed plugins, loaded once per process."""
    from app.tasktypes.builtin import BUILTIN_TYPES  # builtin imports this module
    from app.tasktypes.files import FILE_TYPES

    registry = Registry((*BUILTIN_TYPES, *FILE_TYPES))
    _load_entry_points(registry)
    return registry
