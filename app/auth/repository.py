"""Queries of users, refresh tokens, and the API keys that authenticate requests."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import case, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiKey, RefreshToken, User


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def by_email(self, email: str) -> User | None:
        return await self.session.scalar(select(User).where(User.email == email))

    async def record_sign_in(
        self,
        user_id: uuid.UUID,
        *,
        now: datetime,
        checked_hash: str,
        upgraded_hash: str | None,
    ) -> bool:
        """Set an active user's `last_login_at`, and its hash to `upgraded_hash` if it is still
        `checked_hash` (not changed meanwhile); False if the user is no longer active."""
        values: dict[str, object] = {"last_login_at": now}
        if upgraded_hash is not None:
            values["password_hash"] = case(
                (User.password_hash == checked_hash, upgraded_hash), else_=User.password_hash
            )
        updated = await self.session.scalar(
            update(User)
            .where(User.id == user_id, User.is_active)
            .values(values)
            .returning(User.id)
            .execution_options(synchronize_session=False)
        )
        return updated is not None

    async def deactivate(self, user_id: uuid.UUID) -> bool:
        """Mark an active user inactive; False when there is no such user or it already was."""
        updated = await self.session.scalar(
            update(User)
            .where(User.id == user_id, User.is_active)
            .values(is_active=False)
            .returning(User.id)
            .execution_options(synchronize_session=False)
        )
        return updated is not None


class RefreshTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, token_id: uuid.UUID) -> RefreshToken | None:
        return await self.session.get(RefreshToken, token_id)

    async def use(
        self, token_id: uuid.UUID, *, user_id: uuid.UUID, now: datetime
    ) -> RefreshToken | None:
        """Mark a live token used, once: of two concurrent uses only one gets the row back."""
        query = (
            update(RefreshToken)
            .where(
                RefreshToken.id == token_id,
                RefreshToken.user_id == user_id,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
                RefreshToken.expires_at > now,
            )
            .values(used_at=now)
            .returning(RefreshToken)
            .execution_options(populate_existing=True)
        )
        return await self.session.scalar(query)

    async def revoke_family(self, family_id: uuid.UUID, *, now: datetime) -> int:
        """Revoke every token of the family not revoked yet; how many that was."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(RefreshToken.id)
        )
        return len(result.all())

    async def purge(self, *, now: datetime, limit: int) -> int:
        """Delete up to `limit` tokens that can never be used again: expired ones, and those of
        inactive users; how many went. Rows locked by another purge are skipped."""
        inactive = exists().where(User.id == RefreshToken.user_id, User.is_active.is_(False))
        doomed = (
            select(RefreshToken.id)
            .where(or_(RefreshToken.expires_at <= now, inactive))
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("doomed")  # picked once: an IN subquery may be re-run past the rows it deleted
        )
        result = await self.session.execute(
            delete(RefreshToken).where(RefreshToken.id == doomed.c.id).returning(RefreshToken.id)
        )
        return len(result.all())


class ApiKeyAuthRepository:
    """Finding the key a request presents and recording its use (managing keys: projects)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_prefix(self, prefix: str) -> ApiKey | None:
        return await self.session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))

    async def touch(self, key_id: uuid.UUID, *, now: datetime, stale_before: datetime) -> None:
        """Set `last_used_at` only if it is older than `stale_before`: at most one write a while."""
        await self.session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < stale_before),
            )
            .values(last_used_at=now)
        )
