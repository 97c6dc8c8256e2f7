"""A project's API keys: list, create (the secret shown once), revoke."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiKey
from app.auth.principal_cache import principals
from app.core.config import SecuritySettings
from app.core.db import after_commit, utc_now
from app.core.pagination import decode_keyset, keyset, page_of
from app.core.security import new_api_key
from app.events import service as event_service
from app.projects.access import ProjectAccess, ensure
from app.projects.exceptions import ApiKeyNotFound
from app.projects.models import ApiKeyScope, Role
from app.projects.repository import ApiKeyRepository


async def list_api_keys(
    session: AsyncSession, *, access: ProjectAccess, limit: int, cursor: str | None
) -> tuple[list[ApiKey], str | None]:
    """The project's keys (never their secrets), revoked ones included, newest first; admin+."""
    ensure(access, Role.admin)
    rows = await ApiKeyRepository(session).list(
        access.project_id, after=decode_keyset(cursor), limit=limit + 1
    )
    return page_of(rows, limit=limit, position=lambda key: keyset(key.created_at, key.id))


async def create_api_key(
    session: AsyncSession,
    *,
    settings: SecuritySettings,
    access: ProjectAccess,
    name: str,
    scopes: Iterable[ApiKeyScope],
) -> tuple[ApiKey, str]:
    """A new key and its secret, which is returned here once and stored only as a hash; admin+."""
    ensure(access, Role.admin)
    fresh = new_api_key(settings)
    api_key = ApiKey(
        id=uuid.uuid4(),
        project_id=access.project_id,
        name=name,
        prefix=fresh.prefix,
        secret_hash=fresh.secret_hash,
        scopes=sorted({ApiKeyScope(scope).value for scope in scopes}),
        created_by=access.user_id,
        created_at=utc_now(),
    )
    session.add(api_key)
    event_service.record(
        session,
        "project.api_key_created",
        project_id=access.project_id,
        subject_id=api_key.id,
        actor=access.principal,
        data={"name": name, "prefix": fresh.prefix, "scopes": api_key.scopes},
    )
    await session.flush()
    return api_key, fresh.key


async def revoke_api_key(
    session: AsyncSession, *, access: ProjectAccess, key_id: uuid.UUID
) -> None:
    """Revoke a key of this project (repeating it is harmless); it fails from the next request."""
    ensure(access, Role.admin)
    repository = ApiKeyRepository(session)
    api_key = await repository.get(access.project_id, key_id)
    if api_key is None:
        raise ApiKeyNotFound()
    revoked = await repository.revoke(api_key.id, now=utc_now())
    # This process forgets the key at once; the others within `security.principal_cache_s`.
    after_commit(session, lambda: principals.forget_api_key(api_key.id))
    if revoked is not None:
        event_service.record(
            session,
            "project.api_key_revoked",
            project_id=access.project_id,
            subject_id=api_key.id,
            actor=access.principal,
            data={"name": api_key.name, "prefix": api_key.prefix},
        )
