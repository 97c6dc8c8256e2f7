"""Task errors a client can act on."""

from __future__ import annotations

from typing import Any

from app.core.errors import AppError, Conflict, NotFound


class TaskNotFound(NotFound):
    type, title = "task-not-found", "Task not found"


class TaskAlreadyFinished(Conflict):
    type, title = "task-already-finished", "Task already finished"


class IdempotencyKeyReused(Conflict):
    type, title = "idempotency-key-reused", "Idempotency key reused with a different request"


class InvalidTaskInput(AppError):
    status, type, title = 422, "invalid-task-input", "Task input is not valid for its type"

    def __init__(self, detail: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(detail)
        self.errors = errors


class UnknownTaskType(AppError):
    status, type, title = 422, "unknown-task-type", "Unknown task type"


class TaskLimitExceeded(AppError):
    status, type, title = 422, "task-limit-exceeded", "Task exceeds a configured limit"
