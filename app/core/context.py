"""Context variables carried into every log line: request, task and project ids."""

from __future__ import annotations

from collections.abc import Awaitable
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
task_id_var: ContextVar[str | None] = ContextVar("task_id", default=None)
project_id_var: ContextVar[str | None] = ContextVar("project_id", default=None)


async def with_request_id(request_id: str | None, awaitable: Awaitable[T]) -> T:
    """Await `awaitable` with `request_id` as the request id (inside the task running it, which
    is where a context variable counts: a worker thread's own does not reach its loop)."""
    token = request_id_var.set(request_id)
    try:
        return await awaitable
    finally:
        request_id_var.reset(token)
