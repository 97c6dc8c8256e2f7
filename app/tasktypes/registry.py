"""Task types: a name mapped to a handler, its pydantic input model and its defaults.

Built-ins live in `app.tasktypes.builtin` and `app.tasktypes.files`; other packages add types
through the `taskgate.task_types` entry point group (each entry point is a `TaskType` or a
callable returning an iterable of them). What a type is and what its handler gets are in
`app.tasktypes.base`; its names are also importable from here, the module plugins have used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import lru_cache
from importlib.metadata import entry_points

from app.tasktypes.base import (
    Handler,
    RetryableTaskError,
    TaskCanceled,
    TaskContext,
    TaskError,
    TaskInputError,
    TaskType,
)
from app.tasktypes.builtin import BUILTIN_TYPES
from app.tasktypes.files import FILE_TYPES

__all__ = [
    "ENTRY_POINT_GROUP",
    "Handler",
    "Registry",
    "RetryableTaskError",
    "TaskCanceled",
    "TaskContext",
    "TaskError",
    "TaskInputError",
    "TaskType",
    "TaskTypeNotRegistered",
    "get_registry",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "taskgate.task_types"


class TaskTypeNotRegistered(LookupError):
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
            raise TaskTypeNotRegistered(name) from None

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
    registry = Registry((*BUILTIN_TYPES, *FILE_TYPES))
    _load_entry_points(registry)
    return registry
