"""Bodies of the project, member and API key routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from app.auth.schemas import NormalizedEmail
from app.core.types import without_nul
from app.projects.models import ApiKeyScope, Role
from app.projects.settings import EffectiveProjectSettings, ProjectSettings

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
    settings: ProjectSettings | None = Field(
        None,
        description="Merged into the current settings key by key; a `null` value removes a key "
        "(back to the deployment's default). An unknown key or a value out of range is a 422.",
    )


class ProjectRead(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    role: Role = Field(description="The caller's role in the project.")
    settings: ProjectSettings = Field(description="The project's own settings, as stored.")
    effective_settings: EffectiveProjectSettings = Field(
        description="The limits that apply: `settings` over the deployment's defaults."
    )


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
    scopes: list[ApiKeyScope]
    created_by: uuid.UUID | None
    created_at: datetime
    last_used_at: datetime | None = Field(description="Updated at most once a minute.")
    revoked_at: datetime | None


class ApiKeyCreated(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[ApiKeyScope]
    created_at: datetime
    key: str = Field(description="The secret key. Shown only in this response: store it now.")
