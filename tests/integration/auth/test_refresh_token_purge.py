"""Refresh tokens that can never work again (expired, or of a deactivated user) are deleted by a
scheduler step; live ones stay and still refresh."""

from __future__ import annotations

import uuid
from datetime import timedelta

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import service as auth_service
from app.auth.models import RefreshToken, User
from app.auth.scheduling import RefreshTokenPurge
from app.core.config import Settings
from app.core.db import transaction, utc_now
from app.worker.enqueue import Publisher
from app.worker.scheduler import steps, tick
from tests.factories import DEFAULT_PASSWORD, make_user


async def _sign_in(
    db: async_sessionmaker[AsyncSession], settings: Settings, user: User
) -> auth_service.TokenPair:
    return await auth_service.login(
        db, settings=settings.security, email=user.email, password=DEFAULT_PASSWORD
    )


async def _tokens_of(db: async_sessionmaker[AsyncSession], user: User) -> set[uuid.UUID]:
    async with db() as session:
        rows = await session.scalars(select(RefreshToken.id).where(RefreshToken.user_id == user.id))
        return set(rows)


class TestRefreshTokenPurge:
    async def test_expired_tokens_and_those_of_deactivated_users_go(
        self, db: async_sessionmaker[AsyncSession], settings: Settings
    ) -> None:
        async with transaction(db) as session:
            active, leaving = await make_user(session), await make_user(session)
        live = await _sign_in(db, settings, active)
        await _sign_in(db, settings, leaving)
        expired_id = uuid.uuid4()
        async with transaction(db) as session:
            session.add(
                RefreshToken(
                    id=expired_id,
                    user_id=active.id,
                    family_id=uuid.uuid4(),
                    expires_at=utc_now() - timedelta(seconds=1),
                    created_at=utc_now() - timedelta(days=15),
                )
            )
            await auth_service.deactivate_user(session, user_id=leaving.id, actor=None)
        purge = RefreshTokenPurge(interval_s=300, batch=100)

        done = await purge.sweep(db)
        again = await purge.sweep(db)

        assert done == {"refresh_tokens_purged": 2}
        assert again == {"refresh_tokens_purged": 0}
        assert await _tokens_of(db, leaving) == set()
        assert await _tokens_of(db, active) == {live.refresh.token_id}
        async with transaction(db) as session:
            refreshed = await auth_service.refresh(
                session, settings=settings.security, refresh_token=live.refresh.token
            )
        assert refreshed is not None

    async def test_the_scheduler_runs_the_purge(
        self,
        db: async_sessionmaker[AsyncSession],
        publisher: Publisher,
        redis: Redis,
        settings: Settings,
    ) -> None:
        async with transaction(db) as session:
            user = await make_user(session)
        await _sign_in(db, settings, user)
        async with transaction(db) as session:
            await auth_service.deactivate_user(session, user_id=user.id, actor=None)

        done = await tick(db, publisher, redis, settings, steps=steps(settings))

        assert done["refresh_tokens_purged"] >= 1
        assert await _tokens_of(db, user) == set()
