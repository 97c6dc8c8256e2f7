"""Small async factories for users, projects, members and API keys; tokens without HTTP.

Each factory adds rows and flushes (so the app's sessions, joined to the test's transaction, see
them) and records no events: audit tests count only what the code under test writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiKey, User
from app.core.config import SecuritySettings, Settings
from app.core.db import utc_now
from app.core.security import hash_password, issue_access_token, new_api_key
from app.projects.models import ApiKeyScope, Project, ProjectMember, Role

DEFAULT_PASSWORD = "correct horse battery staple"
_hashes: dict[str, str] = {}


@lru_cache(maxsize=1)
def security_settings() -> SecuritySettings:
    """The security settings the `settings` fixture has too (defaults, or the environment's)."""
    return Settings(env="test").security


async def _password_hash(password: str) -> str:
    # argon2 is deliberately slow: hash each distinct password once per test run.
    if password not in _hashes:
        _hashes[password] = await hash_password(security_settings(), password)
    return _hashes[password]


async def make_user(
    session: AsyncSession, *, password: str = DEFAULT_PASSWORD, **fields: Any
) -> User:
    """An active user with a unique `@example.com` email, who can sign in with `password`."""
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "email": f"user-{uuid.uuid4().hex[:12]}@example.com",
        "is_active": True,
        "created_at": utc_now(),
        **fields,
    }
    user = User(password_hash=await _password_hash(password), **values)
    session.add(user)
    await session.flush()
    return user


async def make_project(session: AsyncSession, *, owner: User, **fields: Any) -> Project:
    """A project with `owner` as its owner member."""
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "name": f"project {uuid.uuid4().hex[:8]}",
        "settings": {},
        "created_at": utc_now(),
        **fields,
    }
    project = Project(owner_id=owner.id, **values)
    session.add(project)
    await session.flush()  # before its member: no ORM relationship orders the inserts
    session.add(
        ProjectMember(
            project_id=project.id, user_id=owner.id, role=Role.owner, created_at=utc_now()
        )
    )
    await session.flush()
    return project


async def add_member(
    session: AsyncSession, project: Project, user: User, role: Role | str
) -> ProjectMember:
    member = ProjectMember(
        project_id=project.id, user_id=user.id, role=Role(role), created_at=utc_now()
    )
    session.add(member)
    await session.flush()
    return member


async def make_api_key(
    session: AsyncSession,
    project: Project,
    *,
    scopes: Iterable[ApiKeyScope | str] = (ApiKeyScope.read, ApiKeyScope.write),
    **fields: Any,
) -> tuple[ApiKey, str]:
    """A live API key of `project` and its secret `tg_…` value."""
    fresh = new_api_key(security_settings())
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "name": "test key",
        "created_at": utc_now(),
        **fields,
    }
    api_key = ApiKey(
        project_id=project.id,
        prefix=fresh.prefix,
        secret_hash=fresh.secret_hash,
        scopes=sorted({ApiKeyScope(scope).value for scope in scopes}),
        **values,
    )
    session.add(api_key)
    await session.flush()
    return api_key, fresh.key


def access_token(user: User) -> str:
    return issue_access_token(security_settings(), subject=user.id).token


def auth_headers(user_or_token: User | str) -> dict[str, str]:
    """`Authorization` for a user (a fresh access token) or a given token or API key."""
    token = user_or_token if isinstance(user_or_token, str) else access_token(user_or_token)
    return {"Authorization": f"Bearer {token}"}
