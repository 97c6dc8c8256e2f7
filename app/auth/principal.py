"""Who is calling: a user (JWT access token) or an API key (one project). Imports no service."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.auth.models import ApiKey, User
from app.events.models import ActorType


@dataclass(frozen=True)
class Principal:
    """The authenticated caller. `user` is None for an API key, which acts in one project only."""

    actor_type: ActorType
    actor_id: uuid.UUID
    user: User | None
    api_key_project_id: uuid.UUID | None
    api_key_scopes: frozenset[str] = frozenset()

    @classmethod
    def for_user(cls, user: User) -> Principal:
        return cls(actor_type=ActorType.user, actor_id=user.id, user=user, api_key_project_id=None)

    @classmethod
    def for_api_key(cls, key: ApiKey) -> Principal:
        return cls(
            actor_type=ActorType.api_key,
            actor_id=key.id,
            user=None,
            api_key_project_id=key.project_id,
            api_key_scopes=frozenset(key.scopes),
        )
