"""`taskgate webhooks reseal`: every stored secret sealed under the current key."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import WebhookSettings
from app.core.db import transaction, utc_now
from app.projects.models import Project
from app.webhooks.models import WebhookEndpoint
from app.webhooks.resealing import reseal_all
from app.webhooks.sealing import UnsealableSecret, key_id_of, seal, unseal
from app.webhooks.signing import new_secret
from tests.integration.webhooks.conftest import make_endpoint, reload_endpoint

OLD_KEY, NEW_KEY = "o" * 40, "n" * 40


def _keys(**fields: object) -> WebhookSettings:
    return WebhookSettings.model_validate(fields)


OLD = _keys(secret_key=OLD_KEY, secret_key_id="k1")
ROTATED = _keys(
    secret_key=NEW_KEY, secret_key_id="k2", previous_secret_key=OLD_KEY, previous_secret_key_id="k1"
)


@pytest.fixture(autouse=True)
async def only_this_projects_endpoints(
    db: async_sessionmaker[AsyncSession], project: Project
) -> None:
    """`reseal_all` reads every endpoint: those that end-to-end tests committed under their own
    keys are set aside, in the test's transaction (rolled back with it)."""
    async with transaction(db) as session:
        await session.execute(
            delete(WebhookEndpoint).where(WebhookEndpoint.project_id != project.id)
        )


class TestReseal:
    async def test_seals_old_and_unsealed_secrets_under_the_current_key_once(
        self, db: async_sessionmaker[AsyncSession], project: Project
    ) -> None:
        plain, current, previous = new_secret(), new_secret(), new_secret()
        legacy = await make_endpoint(db, project, "https://a.example/hooks", secret=plain)
        rotated = await make_endpoint(
            db,
            project,
            "https://b.example/hooks",
            secret=seal(current, OLD),
            previous_secret=seal(previous, OLD),
            previous_secret_expires_at=utc_now() + timedelta(hours=1),
        )

        async with transaction(db) as session:
            changed = await reseal_all(session, ROTATED)
        async with transaction(db) as session:
            again = await reseal_all(session, ROTATED)

        assert (changed, again) == (2, 0)
        for endpoint_id, secrets in ((legacy.id, [plain, None]), (rotated.id, [current, previous])):
            endpoint = await reload_endpoint(db, endpoint_id)
            stored = [endpoint.secret, endpoint.previous_secret]
            assert [key_id_of(value) if value else None for value in stored] == [
                "k2",
                "k2" if secrets[1] else None,
            ]
            assert [
                unseal(value, _keys(secret_key=NEW_KEY, secret_key_id="k2")) if value else None
                for value in stored
            ] == secrets

    async def test_a_secret_no_key_opens_stops_it_before_anything_is_written(
        self, db: async_sessionmaker[AsyncSession], project: Project
    ) -> None:
        unknown = _keys(secret_key="u" * 40, secret_key_id="k9")
        sealed = seal(new_secret(), unknown)
        endpoint = await make_endpoint(db, project, "https://c.example/hooks", secret=sealed)

        with pytest.raises(UnsealableSecret):
            async with transaction(db) as session:
                await reseal_all(session, ROTATED)

        assert (await reload_endpoint(db, endpoint.id)).secret == sealed
