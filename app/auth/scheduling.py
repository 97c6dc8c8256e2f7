"""The auth domain's scheduler step: refresh tokens that can never work again are deleted.

A token expires `security.refresh_token_ttl_s` after it was issued, and a deactivated user's
tokens are refused from the moment of deactivation; their rows served nothing but kept growing.
Expired tokens go whatever their family: reuse detection needs a used token's row only while it
could still be presented, and an expired one is refused before its row is looked up. A deleted
user's tokens go with the user row (`ON DELETE CASCADE`). Bounded batches, `SKIP LOCKED`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.repository import RefreshTokenRepository
from app.core.db import transaction, utc_now
from app.core.scheduling import Periodic


class RefreshTokenPurge(Periodic):
    """Every `interval_s`, up to `batch` dead refresh tokens (again at once while batches are
    full)."""

    def __init__(self, *, interval_s: float, batch: int) -> None:
        super().__init__(
            lambda context: self.sweep(context.sessionmaker), interval_s=interval_s, batch=batch
        )

    async def sweep(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime | None = None
    ) -> dict[str, int]:
        """One batch."""
        async with transaction(sessionmaker) as session:
            purged = await RefreshTokenRepository(session).purge(
                now=now or utc_now(), limit=self.batch
            )
        return {"refresh_tokens_purged": purged}
