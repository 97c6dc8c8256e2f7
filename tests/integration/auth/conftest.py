from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import SecuritySettings, Settings
from app.events.models import Event
from app.main import create_app

ClientFor = Callable[[SecuritySettings], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def client_for(settings: Settings, db: async_sessionmaker[AsyncSession]) -> ClientFor:
    """A client of an app with other security settings (keys, algorithms), on the test's data."""

    @asynccontextmanager
    async def open_client(security: SecuritySettings) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings.model_copy(update={"security": security}))
        async with app.router.lifespan_context(app):
            app.state.sessionmaker = db
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                yield client

    return open_client


async def events_of(session: AsyncSession, kind: str, **where: Any) -> list[Event]:
    query = select(Event).where(Event.kind == kind).execution_options(populate_existing=True)
    for name, value in where.items():
        query = query.where(getattr(Event, name) == value)
    return list(await session.scalars(query.order_by(Event.at)))


def problem_identity(response: httpx.Response) -> tuple[Any, ...]:
    """What a problem says, without where and when it was asked."""
    body = response.json()
    return (response.status_code, body["type"], body["title"], body["detail"])
