"""Context variables carried into every log line: request, task and project ids."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
task_id_var: ContextVar[str | None] = ContextVar("task_id", default=None)
project_id_var: ContextVar[str | None] = ContextVar("project_id", default=None)
