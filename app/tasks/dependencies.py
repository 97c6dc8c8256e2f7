"""FastAPI loaders for the task routes: the registry and the idempotency header. (Submit and
the task read take their plumbing from the app's state: `tasks.router`.)"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header

from app.tasktypes.registry import Registry, get_registry


async def _registry() -> Registry:
    return get_registry()


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
