"""`taskgate webhooks reseal`: every endpoint's secrets sealed under the current key.

Run it after setting a new `webhooks.secret_key` (the old one as `previous_secret_key`), and once
after upgrading from a version that stored secrets as they are; then the previous key can go.
Each row is rewritten only if it still holds what was read (a rotation meanwhile wins).
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import WebhookSettings
from app.webhooks.models import WebhookEndpoint
from app.webhooks.sealing import key_id_of, seal, unseal


def _resealed(stored: str | None, settings: WebhookSettings) -> str | None:
    """`stored` sealed under the current key, or None when it is already (or holds nothing)."""
    if stored is None or key_id_of(stored) == settings.secret_key_id:
        return None
    return seal(unseal(stored, settings), settings)


async def reseal_all(session: AsyncSession, settings: WebhookSettings) -> int:
    """Seal every secret under the current key (`UnsealableSecret` if one cannot be opened:
    nothing is written then); the number of endpoints rewritten."""
    rows = (
        await session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.secret, WebhookEndpoint.previous_secret)
        )
    ).all()
    changed = 0
    for endpoint_id, secret, previous in rows:
        new_secret = _resealed(secret, settings)
        new_previous = _resealed(previous, settings)
        if new_secret is None and new_previous is None:
            continue
        result = await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.secret == secret)
            .values(
                secret=new_secret or secret,
                previous_secret=new_previous or previous,
            )
        )
        changed += result.rowcount  # type: ignore[attr-defined]
    return changed
