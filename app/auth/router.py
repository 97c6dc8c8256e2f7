"""Registration, sign-in, token refresh and the current user."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, status

from app.auth import service as auth_service
from app.auth.admission import admission_of
from app.auth.dependencies import CurrentUser
from app.auth.exceptions import (
    EmailTaken,
    InvalidCredentials,
    InvalidRefreshToken,
    LoginFailed,
    UserTokenRequired,
)
from app.auth.schemas import RefreshRequest, TokenForm, TokenResponse, UserRead, UserRegister
from app.auth.service import TokenPair
from app.core.db import transaction
from app.core.dependencies import SessionDep, SessionmakerDep, SettingsDep
from app.core.errors import BadRequest, error_responses
from app.core.ratelimit import RateLimited
from app.core.security import PasswordHashingBusy

router = APIRouter()


def _tokens(pair: TokenPair) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access.token,
        expires_in=pair.access.expires_in,
        refresh_token=pair.refresh.token,
    )


@router.post(
    "/auth/register",
    tags=["auth"],
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(EmailTaken, RateLimited, PasswordHashingBusy),
)
async def register_user(
    request: Request, data: UserRegister, session: SessionDep, settings: SettingsDep
) -> UserRead:
    """Create an account. Emails are unique regardless of case; passwords have 8-128 characters.
    Then sign in with `POST /v1/auth/token`. A 503 with `Retry-After` means too many sign-ins
    at once; a 429, too many registrations from the client's address."""
    if (admission := admission_of(request)) is not None:
        await admission.register(request)
    user = await auth_service.create_user(
        session, settings=settings.security, email=data.email, password=data.password
    )
    return UserRead.model_validate(user)


@router.post(
    "/auth/token",
    tags=["auth"],
    responses=error_responses(BadRequest, LoginFailed, RateLimited, PasswordHashingBusy),
    # Plain fields only: a file part is a 400 before any of it is stored.
    form_limits={"max_files": 0, "max_fields": 16, "max_part_size": 16_384},
)
async def create_token(
    request: Request,
    form: Annotated[TokenForm, Form()],
    sessionmaker: SessionmakerDep,
    settings: SettingsDep,
) -> TokenResponse:
    """Sign in with the OAuth2 password flow (form fields `username` = email, `password`).
    Returns an access token (send it as `Authorization: Bearer …`, valid `expires_in` seconds)
    and a single-use refresh token. A 503 with `Retry-After` means too many sign-ins at once; a
    429, too many attempts from the client's address or for the email."""
    if (admission := admission_of(request)) is not None:
        await admission.sign_in(request, form.username)
    # Not SessionDep: the password is checked between two short transactions, with no
    # connection held while it waits for a hashing thread.
    pair = await auth_service.login(
        sessionmaker, settings=settings.security, email=form.username, password=form.password
    )
    return _tokens(pair)


@router.post("/auth/refresh", tags=["auth"], responses=error_responses(InvalidRefreshToken))
async def refresh_token(
    data: RefreshRequest, sessionmaker: SessionmakerDep, settings: SettingsDep
) -> TokenResponse:
    """Trade a refresh token for a new access and refresh token. Each refresh token works once;
    presenting a used one again revokes every token of that sign-in. A refused token is a 401
    `invalid-refresh-token` (without `WWW-Authenticate`: no header would help)."""
    # Not SessionDep: a reused token's family revocation must commit although the answer is 401.
    async with transaction(sessionmaker) as session:
        pair = await auth_service.refresh(
            session, settings=settings.security, refresh_token=data.refresh_token
        )
    if pair is None:
        raise InvalidRefreshToken()
    return _tokens(pair)


@router.get(
    "/users/me", tags=["users"], responses=error_responses(InvalidCredentials, UserTokenRequired)
)
async def get_me(user: CurrentUser) -> UserRead:
    """The signed-in user. Needs a user token (API keys get 403)."""
    return UserRead.model_validate(user)
