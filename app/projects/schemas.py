"""Bodies of the project, member and API key routes."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from app.auth.schemas import NormalizedEmail
from app.core.types import check_storable_json, without_nul
from app.projects.models import ApiKeyScope, Role

MAX_SETTINGS_BYTES = 16_384
MAX_SETTINGS_DEPTH = 16

Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(without_nul),
]


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(examples=["thumbnails"])


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    settings: dict[str, Any] | None = Field(
        None,
        description="Merged into the current settings key by key; a `null` value removes a key.",
    )

    @field_validator("settings")
    @classmethod
    def _storable(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        check_storable_json(value, max_depth=MAX_SETTINGS_DEPTH)
        if len(json.dumps(value)) > MAX_SETTINGS_BYTES:
            raise ValueError(f"settings must be at most {MAX_SETTINGS_BYTES} bytes of JSON")
        return value


class ProjectRead(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    role: Role = Field(description="The caller's role in the project.")
    settings: dict[str, Any]


class MemberAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: NormalizedEmail
    role: Role = Role.member


class MemberUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


class MemberRead(BaseModel):
    user_id: uuid.UUID
    email: str
    role: Role
    created_at: datetime = Field(description="When the user joined the project.")


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(examples=["ci"])
    scopes: list[ApiKeyScope] = Field(
        default_factory=lambda: [ApiKeyScope.read, ApiKeyScope.write],
        min_length=1,
        max_length=len(ApiKeyScope),
        description="`write` acts as a `member` (submit tasks, upload files), `read` only as a "
        "`viewer`. No key can manage members, keys or webhooks, or delete the project.",
    )

    @field_validator("scopes")
    @classmethod
    def _unique(cls, value: list[ApiKeyScope]) -> list[ApiKeyScope]:
        return sorted(set(value))


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    created_by: uuid.UUID | None
    created_at: datetime
    last_used_at: datetime | None = Field(description="Updated at most once a minute.")
    revoked_at: datetime | None


class ApiKeyCreated(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    key: str = Field(description="The secret key. Shown only in this response: store it now.")
