"""FastAPI dependencies: who is calling.

`CurrentPrincipal` accepts `Authorization: Bearer <JWT access token>` or `Bearer tg_…` (an API
key of one project). `CurrentUser` is for user-only routes: an API key there is a 403
(`user-token-required`). Every credential failure is the same 401 with `WWW-Authenticate: Bearer`.
`DetachedPrincipal` is the same caller for routes that must hold no connection while they run.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer, OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import api_keys
from app.auth import service as auth_service
from app.auth.admission import admission_of
from app.auth.exceptions import InvalidCredentials, UserTokenRequired
from app.auth.models import User
from app.auth.principal import Principal
from app.auth.principal_cache import principals
from app.core.config import Settings
from app.core.db import after_commit, transaction, utc_now
from app.core.dependencies import SessionDep, SessionmakerDep, SettingsDep
from app.core.logging import note_caller
from app.core.openapi import secured_by
from app.core.security import API_KEY_PREFIX

# Two schemes for `Authorization: Bearer …`, so the OpenAPI document offers both ways. No route
# resolves them: `bearer_of` reads the header as they would, and `secured_by` documents them.
_user_token = OAuth2PasswordBearer(
    tokenUrl="/v1/auth/token",
    scheme_name="UserToken",
    description="A user's access token from `POST /v1/auth/token`.",
    auto_error=False,
)
_api_key = HTTPBearer(
    scheme_name="ApiKey",
    bearerFormat="tg_…",
    description="A project's API key, `Authorization: Bearer tg_…`.",
    auto_error=False,
)


async def _record_api_key_use(
    sessionmaker: async_sessionmaker[AsyncSession], key_id: uuid.UUID, now: datetime
) -> None:
    async with transaction(sessionmaker) as session:
        await api_keys.touch_api_key(session, key_id=key_id, now=now)


def bearer_of(request: Request) -> str:
    """The credential of `Authorization: Bearer …`, read as `_user_token` and `_api_key` read
    it (the scheme in any case, the rest after the first space, stripped); 401 for anything
    else."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        raise InvalidCredentials()
    return credentials


# What a dependency that reads the header itself (`bearer_of`) documents (`secured_by`).
BEARER_SCHEMES = (_user_token, _api_key)


async def _authenticate(
    session: AsyncSession,
    *,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    bearer: str,
) -> Principal:
    if bearer.startswith(API_KEY_PREFIX):
        cached = principals.get(bearer)
        if cached is not None:
            return cached
        api_key = await api_keys.authenticate_api_key(
            session, settings=settings.security, key=bearer
        )
        if api_key is None:
            raise InvalidCredentials()
        now = utc_now()
        if api_keys.api_key_needs_touch(api_key, now):
            # Once the transaction that found the key is over, in a short one of its own.
            after_commit(
                session, functools.partial(_record_api_key_use, sessionmaker, api_key.id, now)
            )
        principal = Principal.for_api_key(api_key)
        principals.put(bearer, principal, ttl_s=settings.security.principal_cache_s)
        return principal
    user = await auth_service.user_from_access_token(
        session, settings=settings.security, token=bearer
    )
    if user is None:
        raise InvalidCredentials()
    return Principal.for_user(user)


async def _admitted(request: Request, principal: Principal) -> Principal:
    """The caller, named for the access log line and charged for the request (`admission`)."""
    note_caller(request.scope, kind=principal.actor_type.value, caller_id=principal.actor_id)
    if (admission := admission_of(request)) is not None:
        await admission.admit(request, principal)
    return principal


async def get_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    sessionmaker: SessionmakerDep,
) -> Principal:
    """The caller, from a JWT access token or an API key; 401 for anything else."""
    bearer = bearer_of(request)
    principal = await _authenticate(
        session, settings=settings, sessionmaker=sessionmaker, bearer=bearer
    )
    return await _admitted(request, principal)


async def get_detached_principal(request: Request) -> Principal:
    """`get_principal` in a short transaction of its own, committed before the route runs
    (none at all for an API key this process has just seen).

    The credential, the settings and the sessionmaker come from the request and the app's
    state, not from loaders: this runs on every submit and poll, where each loader costs
    FastAPI's resolution more than its work."""
    bearer = bearer_of(request)
    if (cached := principals.get(bearer)) is not None:
        return await _admitted(request, cached)
    settings: Settings = request.app.state.settings
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker

    async def load() -> Principal:
        async with transaction(sessionmaker) as session:
            return await _authenticate(
                session, settings=settings, sessionmaker=sessionmaker, bearer=bearer
            )

    principal = await principals.load_once(bearer, load, ttl_s=settings.security.principal_cache_s)
    return await _admitted(request, principal)


# Both read the header themselves (`bearer_of`): the schemes are documented, never resolved.
secured_by(get_principal, *BEARER_SCHEMES)
secured_by(get_detached_principal, *BEARER_SCHEMES)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
# For routes that wait or stream (a long-poll, an upload): the caller is known, and no connection
# is held. Such a route takes no `SessionDep`; it takes `SessionmakerDep` and passes it to a
# service that opens a short `transaction()` for each read or write it needs.
DetachedPrincipal = Annotated[Principal, Depends(get_detached_principal)]


async def get_current_user(principal: CurrentPrincipal) -> User:
    """The calling user; API keys are refused with 403 on user-only routes."""
    if principal.user is None:
        raise UserTokenRequired()
    return principal.user


CurrentUser = Annotated[User, Depends(get_current_user)]
