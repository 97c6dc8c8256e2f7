"""API key authentication: which live key a `tg_…` credential is, and when it was last used.

Keys belong to a project and are created, listed and revoked there (`app.projects.keys`);
checking one needs nothing of projects, so authentication never imports a domain above auth.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiKey
from app.auth.repository import ApiKeyAuthRepository
from app.core.config import SecuritySettings
from app.core.security import api_key_matches, api_key_prefix

# `last_used_at` is written at most this often per key, not on every request.
API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


async def authenticate_api_key(
    session: AsyncSession, *, settings: SecuritySettings, key: str
) -> ApiKey | None:
    """The live key that `key` is, or None (malformed, unknown, wrong secret, revoked)."""
    prefix = api_key_prefix(key)
    if prefix is None:
        return None
    api_key = await ApiKeyAuthRepository(session).by_prefix(prefix)
    if api_key is None or not api_key_matches(settings, key, api_key.secret_hash):
        return None
    return None if api_key.revoked_at is not None else api_key


def api_key_needs_touch(api_key: ApiKey, now: datetime) -> bool:
    """Whether `last_used_at` is stale enough to be worth a write."""
    return api_key.last_used_at is None or now - api_key.last_used_at >= API_KEY_TOUCH_INTERVAL


async def touch_api_key(session: AsyncSession, *, key_id: uuid.UUID, now: datetime) -> None:
    """Record a use of the key, unless another request did so within the interval."""
    await ApiKeyAuthRepository(session).touch(
        key_id, now=now, stale_before=now - API_KEY_TOUCH_INTERVAL
    )
