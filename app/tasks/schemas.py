"""Task request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.types import JsonInt, JsonObject, PlainText, Rfc3339Time
from app.tasks.models import Priority, TaskStatus


class TaskSubmit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: PlainText = Field(min_length=1, max_length=100, examples=["echo"])
    input: JsonObject = Field(default_factory=dict, examples=[{"hello": "world"}])
    priority: Priority = Priority.default
    run_at: Rfc3339Time | None = Field(None, description="Do not start before this time.")
    max_attempts: JsonInt | None = Field(None, ge=1, description="Default: the type's.")
    timeout_s: JsonInt | None = Field(None, ge=1, description="Per attempt. Default: the type's.")


class TaskErrorRead(BaseModel):
    type: str
    message: str


class TaskRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    project_id: uuid.UUID
    type: str
    status: TaskStatus
    priority: Priority
    input: dict[str, Any]
    result: Any | None
    result_url: str | None = None
    error: TaskErrorRead | None
    progress: float | None
    progress_message: str | None
    attempt: int
    max_attempts: int
    timeout_s: int
    idempotency_key: str | None
    run_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None
    request_id: str | None


class TaskTypeRead(BaseModel):
    name: str
    description: str
    input_schema: dict[str, Any]
    default_timeout_s: int
    default_max_attempts: int
