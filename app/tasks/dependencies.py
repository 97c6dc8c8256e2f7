"""FastAPI loaders for the task routes: the registry, the long-poll waiter and the task cache."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from app.tasks.cache import TaskCache
from app.tasks.waiter import TaskWaiter
from app.tasktypes.registry import Registry, get_registry


async def _waiter(request: Request) -> TaskWaiter:
    waiter: TaskWaiter = request.app.state.task_waiter
    return waiter


async def _task_cache(request: Request) -> TaskCache | None:
    cache: TaskCache | None = getattr(request.app.state, "task_cache", None)
    return cache


async def _registry() -> Registry:
    return get_registry()


WaiterDep = Annotated[TaskWaiter, Depends(_waiter)]
TaskCacheDep = Annotated[TaskCache | None, Depends(_task_cache)]
RegistryDep = Annotated[Registry, Depends(_registry)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Repeat a submission safely: the same key and body return the original task.",
    ),
]
