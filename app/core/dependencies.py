"""FastAPI loaders of the request's plumbing: the settings, the sessionmaker and a session.

Every router takes these from here. Who is calling is the auth domain's (`app.auth.dependencies`).
Every loader is `async def`: FastAPI runs a plain `def` dependency in a worker thread, a hop that
costs more than the loader itself on every request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.db import transaction


async def settings_from_request(request: Request) -> Settings:
    """The settings `create_app()` was built with (not `core.config.get_settings()`: the process
    environment), so an app made with other settings, as in tests, uses its own."""
    settings: Settings = request.app.state.settings
    return settings


async def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with transaction(request.app.state.sessionmaker) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(settings_from_request)]
SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]
# scope="function": commit before the response is sent, so a failed commit is a 500, never a 2xx.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
