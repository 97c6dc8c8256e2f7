"""Accounts, sign-in and token rotation.

Refresh tokens are single use: each refresh marks the presented token used and issues the next
one of the same family. Presenting a used token again means it was copied, so the whole family
(the thief's and the owner's session) is revoked and both have to sign in again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.exceptions import EmailTaken, LoginFailed
from app.auth.models import RefreshToken, User
from app.auth.principal import Principal
from app.auth.repository import RefreshTokenRepository, UserRepository
from app.core.config import SecuritySettings
from app.core.db import transaction, utc_now
from app.core.security import (
    InvalidTokenError,
    IssuedToken,
    PasswordHashingBusy,
    TokenType,
    check_hashing_capacity,
    decode_token,
    hash_password,
    issue_access_token,
    issue_refresh_token,
    password_needs_rehash,
    verify_password,
)
from app.events import service as event_service

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenPair:
    access: IssuedToken
    refresh: IssuedToken


def normalize_email(email: str) -> str:
    """The stored form of an email: validated and lower-cased (unchanged but trimmed if invalid)."""
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return email.strip().lower()


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    return await UserRepository(session).by_email(normalize_email(email))


async def create_user(
    session: AsyncSession,
    *,
    settings: SecuritySettings,
    email: str,
    password: str,
    by_operator: bool = False,
) -> User:
    """Register an account and its `user.registered` event (the actor is the new user, or the
    system when an operator creates it)."""
    email = normalize_email(email)
    # Hashed before the session's first query, so no pooled connection waits for a hashing
    # thread (a session takes its connection at its first statement).
    password_hash = await hash_password(settings, password)
    users = UserRepository(session)
    if await users.by_email(email) is not None:
        raise EmailTaken()
    user = User(
        id=uuid.uuid4(),
        email=email,
        password_hash=password_hash,
        is_active=True,
        created_at=utc_now(),
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:  # registered concurrently since the check above
        raise EmailTaken() from None
    event_service.record(
        session,
        "user.registered",
        project_id=None,
        subject_id=user.id,
        actor=None if by_operator else Principal.for_user(user),
        data={"email": email, "by_operator": by_operator},
    )
    return user


async def deactivate_user(
    session: AsyncSession, *, user_id: uuid.UUID, actor: Principal | None
) -> bool:
    """Mark the user inactive, with its `user.deactivated` event: no sign-in, refresh or access
    token of theirs works from the next request. False (and nothing recorded) when there is no
    such user or it already was. What they created in projects goes too, but that is for
    `app.projects.departures.deactivate_user`, the one operators call."""
    if not await UserRepository(session).deactivate(user_id):
        return False
    event_service.record(
        session, "user.deactivated", project_id=None, subject_id=user_id, actor=actor, data={}
    )
    return True


async def authenticate(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    settings: SecuritySettings,
    email: str,
    password: str,
) -> User:
    """The active user with these credentials, else `LoginFailed`, whichever part was wrong.
    The lookup's transaction ends before the password is checked: no pooled connection waits
    for a hashing thread."""
    check_hashing_capacity(settings)  # shed before touching the database
    async with transaction(sessionmaker) as session:
        found = await UserRepository(session).by_email(normalize_email(email))
    user = found if found is not None and found.is_active else None
    valid = await verify_password(settings, user.password_hash if user else None, password)
    if user is None or not valid:
        raise LoginFailed()
    return user


async def _issue_pair(
    session: AsyncSession, *, settings: SecuritySettings, user_id: uuid.UUID, family_id: uuid.UUID
) -> TokenPair:
    now = utc_now()
    refresh = issue_refresh_token(settings, subject=user_id, token_id=uuid.uuid4(), now=now)
    session.add(
        RefreshToken(
            id=refresh.token_id,
            user_id=user_id,
            family_id=family_id,
            expires_at=refresh.expires_at,
            created_at=now,
        )
    )
    await session.flush()
    return TokenPair(access=issue_access_token(settings, subject=user_id, now=now), refresh=refresh)


async def login(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    settings: SecuritySettings,
    email: str,
    password: str,
) -> TokenPair:
    """Check the credentials and start a new refresh token family; a hash made with older
    parameters is upgraded. Each hash runs between two short transactions, never inside one."""
    user = await authenticate(sessionmaker, settings=settings, email=email, password=password)
    upgraded = None
    if password_needs_rehash(settings, user.password_hash):
        try:
            upgraded = await hash_password(settings, password)
        except PasswordHashingBusy:
            log.info("hash upgrade left for a later sign-in", extra={"user_id": str(user.id)})
    async with transaction(sessionmaker) as session:
        signed_in = await UserRepository(session).record_sign_in(
            user.id, now=utc_now(), checked_hash=user.password_hash, upgraded_hash=upgraded
        )
        if not signed_in:  # deactivated while its password was checked
            raise LoginFailed()
        return await _issue_pair(
            session, settings=settings, user_id=user.id, family_id=uuid.uuid4()
        )


async def refresh(
    session: AsyncSession, *, settings: SecuritySettings, refresh_token: str
) -> TokenPair | None:
    """Trade a refresh token for a new pair; None if refused. Commit even when None: a reused
    token revokes its family here, and that must stick."""
    try:
        claims = decode_token(settings, refresh_token, token_type=TokenType.refresh)
        token_id, user_id = uuid.UUID(claims.token_id), uuid.UUID(claims.subject)
    except (InvalidTokenError, ValueError) as exc:
        log.info("refresh token refused", extra={"reason": str(exc)})
        return None
    tokens = RefreshTokenRepository(session)
    now = utc_now()
    used = await tokens.use(token_id, user_id=user_id, now=now)
    if used is None:
        stored = await tokens.get(token_id)
        if stored is not None and stored.used_at is not None:
            revoked = await tokens.revoke_family(stored.family_id, now=now)
            log.warning(
                "refresh token reused; family revoked",
                extra={"user_id": str(user_id), "family_id": str(stored.family_id)},
            )
            if revoked:
                event_service.record(
                    session,
                    "user.refresh_token_reused",
                    project_id=None,
                    subject_id=user_id,
                    actor=None,
                    data={"family_id": str(stored.family_id), "revoked": revoked},
                )
        return None
    user = await UserRepository(session).get(user_id)
    if user is None or not user.is_active:
        return None
    return await _issue_pair(session, settings=settings, user_id=user.id, family_id=used.family_id)


async def user_from_access_token(
    session: AsyncSession, *, settings: SecuritySettings, token: str
) -> User | None:
    """The active user an access token belongs to, or None (the reason is logged)."""
    try:
        claims = decode_token(settings, token, token_type=TokenType.access)
        user_id = uuid.UUID(claims.subject)
    except (InvalidTokenError, ValueError) as exc:
        log.info("access token refused", extra={"reason": str(exc)})
        return None
    user = await UserRepository(session).get(user_id)
    return user if user is not None and user.is_active else None
