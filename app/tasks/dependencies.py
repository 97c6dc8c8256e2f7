"""FastAPI loaders for the task routes: the registry and the long-poll waiter."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from app.tasks.waiter import TaskWaiter
from app.tasktypes.registry import Registry, get_registry


async def _waiter(request: Request) -> TaskWaiter:
    waiter: TaskWaiter = request.app.state.task_waiter
    return waiter


async def _registry() -> Registry:
    return get_registry()


WaiterDep = Annotated[TaskWaiter, Depends(_waiter)]
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
