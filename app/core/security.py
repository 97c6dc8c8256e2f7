"""Tokens, passwords and API key secrets. The only module that imports `jwt` (docs/decisions/0001).

- JWTs: one pinned algorithm per key id (`kid`); the current key signs, the current and the
  previous key verify. `exp`, `iat`, `sub`, `iss`, `aud`, `jti` and a token type (`typ`) are
  required; tokens over `MAX_TOKEN_BYTES` are refused before anything is decoded; `jku`, `x5u`,
  `jwk` and `x5c` headers are refused, never followed.
- Passwords: argon2id (>= 19 MiB, >= 2 passes, parallelism 1), hashed in worker threads, a few
  at once; callers past a bounded queue are shed with a 503.
- API keys: `tg_<12 hex>_<43 url-safe chars>`, stored as an HMAC-SHA256 under a server pepper.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import os
import re
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any, TypeVar

import anyio
import jwt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import serialization

from app.core.config import JwtAlgorithm, SecuritySettings
from app.core.errors import ServiceUnavailable

log = logging.getLogger(__name__)

_T = TypeVar("_T")

MAX_TOKEN_BYTES = 8192
# Tolerated clock difference between the processes that issue and check tokens.
CLOCK_SKEW_S = 5
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud", "jti", "typ"]
_REFUSED_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c"})


class TokenType(enum.StrEnum):
    access = "access"
    refresh = "refresh"


class InvalidTokenError(Exception):
    """A token failed a check. The reason is for logs only; clients get one generic 401."""


@dataclass(frozen=True)
class IssuedToken:
    token: str
    token_id: uuid.UUID
    expires_at: datetime
    expires_in: int


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    token_type: TokenType
    token_id: str
    key_id: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class _Key:
    kid: str
    algorithm: JwtAlgorithm
    verifying_key: Any  # bytes (HS256) or a cryptography public key


@dataclass(frozen=True)
class _KeyRing:
    kid: str
    algorithm: JwtAlgorithm
    signing_key: Any  # bytes (HS256) or a cryptography private key
    verifiers: Mapping[str, _Key]


def _public_key(pem: str) -> Any:
    data = pem.encode()
    if b"PRIVATE KEY" in data:
        return serialization.load_pem_private_key(data, password=None).public_key()
    return serialization.load_pem_public_key(data)


@lru_cache(maxsize=8)
def _keyring(settings: SecuritySettings) -> _KeyRing:
    """The parsed keys of `settings` (validated there: lengths, PEM types, distinct kids)."""
    if settings.jwt_algorithm == "HS256":
        signing_key: Any = settings.jwt_secret.get_secret_value().encode()
        verifying_key: Any = signing_key
    else:
        assert settings.jwt_private_key is not None  # noqa: S101 (SecuritySettings checks it)
        pem = settings.jwt_private_key.get_secret_value().encode()
        signing_key = serialization.load_pem_private_key(pem, password=None)
        verifying_key = signing_key.public_key()
    verifiers = {
        settings.jwt_key_id: _Key(settings.jwt_key_id, settings.jwt_algorithm, verifying_key)
    }
    if settings.jwt_previous_key_id is not None and settings.jwt_previous_key is not None:
        previous = settings.jwt_previous_key.get_secret_value()
        algorithm = settings.previous_algorithm
        key = previous.encode() if algorithm == "HS256" else _public_key(previous)
        verifiers[settings.jwt_previous_key_id] = _Key(settings.jwt_previous_key_id, algorithm, key)
    return _KeyRing(
        kid=settings.jwt_key_id,
        algorithm=settings.jwt_algorithm,
        signing_key=signing_key,
        verifiers=MappingProxyType(verifiers),
    )


def _issue(
    settings: SecuritySettings,
    *,
    subject: uuid.UUID,
    token_type: TokenType,
    token_id: uuid.UUID,
    ttl_s: int,
    now: datetime | None,
) -> IssuedToken:
    ring = _keyring(settings)
    issued_at = (now or datetime.now(UTC)).replace(microsecond=0)
    expires_at = issued_at + timedelta(seconds=ttl_s)
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(subject),
        "iat": int(issued_at.timestamp()),
        "exp": int(expires_at.timestamp()),
        "jti": str(token_id),
        "typ": token_type.value,
    }
    token = jwt.encode(
        claims, ring.signing_key, algorithm=ring.algorithm, headers={"kid": ring.kid}
    )
    return IssuedToken(token=token, token_id=token_id, expires_at=expires_at, expires_in=ttl_s)


def issue_access_token(
    settings: SecuritySettings, *, subject: uuid.UUID, now: datetime | None = None
) -> IssuedToken:
    """A short-lived (<= 15 min) access token for the user `subject`."""
    return _issue(
        settings,
        subject=subject,
        token_type=TokenType.access,
        token_id=uuid.uuid4(),
        ttl_s=settings.access_token_ttl_s,
        now=now,
    )


def issue_refresh_token(
    settings: SecuritySettings,
    *,
    subject: uuid.UUID,
    token_id: uuid.UUID,
    now: datetime | None = None,
) -> IssuedToken:
    """A refresh token whose `jti` is the id of its (single-use) row in `refresh_tokens`."""
    return _issue(
        settings,
        subject=subject,
        token_type=TokenType.refresh,
        token_id=token_id,
        ttl_s=settings.refresh_token_ttl_s,
        now=now,
    )


def decode_token(settings: SecuritySettings, token: str, *, token_type: TokenType) -> TokenClaims:
    """Verify `token` as a `token_type` token of ours, or raise `InvalidTokenError`."""
    if len(token) > MAX_TOKEN_BYTES or not token.isascii():
        raise InvalidTokenError("token larger than 8 KB or not ASCII")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(f"malformed token: {exc}") from None
    kid = header.get("kid")
    key = _keyring(settings).verifiers.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise InvalidTokenError("unknown key id")
    if header.get("alg") != key.algorithm:
        raise InvalidTokenError("algorithm does not match the key")
    if _REFUSED_HEADERS & header.keys():
        raise InvalidTokenError("refused header")
    try:
        claims = jwt.decode(
            token,
            key.verifying_key,
            algorithms=[key.algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=CLOCK_SKEW_S,
            options={"require": _REQUIRED_CLAIMS, "enforce_minimum_key_length": True},
        )
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(f"{type(exc).__name__}: {exc}") from None
    if claims["typ"] != token_type.value:
        raise InvalidTokenError(f"not an {token_type.value} token")
    if not isinstance(claims["jti"], str):
        raise InvalidTokenError("jti is not a string")
    return TokenClaims(
        subject=claims["sub"],
        token_type=token_type,
        token_id=claims["jti"],
        key_id=key.kid,
        issued_at=datetime.fromtimestamp(int(claims["iat"]), UTC),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
    )


# --- passwords --------------------------------------------------------------------------------


class PasswordHashingBusy(ServiceUnavailable):
    type, title = "password-hashing-busy", "Too many sign-ins at once"

    def __init__(self) -> None:
        super().__init__(
            "Too many passwords are being checked right now; retry in a second.",
            headers={"Retry-After": "1"},
        )


class HashingQueue:
    """Runs argon2 in worker threads, `capacity` at once (each hash holds >= 19 MiB), and refuses
    to queue more than a bound behind them: past it a caller is shed at once instead of waiting."""

    def __init__(self, capacity: int) -> None:
        self.limiter = anyio.CapacityLimiter(capacity)
        self._threads = anyio.CapacityLimiter(capacity)  # always free: `limiter` admits first
        self.waiting = 0  # callers admitted that wait for a free slot of `limiter`

    def check(self, max_waiting: int) -> None:
        """Raise `PasswordHashingBusy` if `max_waiting` callers already wait for a slot."""
        if self.waiting >= max_waiting and self.limiter.available_tokens < 1:
            raise PasswordHashingBusy()

    async def run(self, max_waiting: int, function: Callable[..., _T], *args: Any) -> _T:
        """`function(*args)` in a thread once a slot is free; `PasswordHashingBusy` if
        `max_waiting` callers wait already."""
        self.check(max_waiting)
        self.waiting += 1
        try:
            await self.limiter.acquire()
        finally:
            self.waiting -= 1
        try:
            return await anyio.to_thread.run_sync(function, *args, limiter=self._threads)
        finally:
            self.limiter.release()


PASSWORD_HASHING = HashingQueue(max(2, os.cpu_count() or 2))


@lru_cache(maxsize=4)
def _hasher(memory_kib: int, time_cost: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1, type=Type.ID)


def _password_hasher(settings: SecuritySettings) -> PasswordHasher:
    return _hasher(settings.password_hash_memory_kib, settings.password_hash_time_cost)


@lru_cache(maxsize=4)
def _dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash(secrets.token_urlsafe(16))


def _verify(hasher: PasswordHasher, password_hash: str | None, password: str) -> bool:
    try:
        # Unknown users are checked against a dummy hash, so both answers take as long.
        hasher.verify(password_hash or _dummy_hash(hasher), password)
    except (VerificationError, InvalidHashError):
        return False
    return password_hash is not None


def check_hashing_capacity(settings: SecuritySettings) -> None:
    """`PasswordHashingBusy` if a hash asked for now would be shed (to refuse before any work)."""
    PASSWORD_HASHING.check(settings.password_hash_max_waiting)


async def hash_password(settings: SecuritySettings, password: str) -> str:
    """An argon2id hash of `password`, computed off the event loop."""
    hasher = _password_hasher(settings)
    return await PASSWORD_HASHING.run(settings.password_hash_max_waiting, hasher.hash, password)


async def verify_password(
    settings: SecuritySettings, password_hash: str | None, password: str
) -> bool:
    """Whether `password` matches; `password_hash=None` (no such user) costs the same and fails."""
    hasher = _password_hasher(settings)
    return await PASSWORD_HASHING.run(
        settings.password_hash_max_waiting, _verify, hasher, password_hash, password
    )


def password_needs_rehash(settings: SecuritySettings, password_hash: str) -> bool:
    """Whether `password_hash` was made with other parameters than the current ones."""
    try:
        return _password_hasher(settings).check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


# --- API keys ---------------------------------------------------------------------------------

API_KEY_PREFIX = "tg_"
_API_KEY = re.compile(r"(tg_[0-9a-f]{12})_[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class NewApiKey:
    key: str  # shown to its creator once, never stored
    prefix: str  # public, stored, finds the row
    secret_hash: str  # stored


def new_api_key(settings: SecuritySettings) -> NewApiKey:
    """A fresh random API key, its public prefix and the hash to store."""
    prefix = API_KEY_PREFIX + secrets.token_hex(6)
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    return NewApiKey(key=key, prefix=prefix, secret_hash=hash_api_key(settings, key))


def api_key_prefix(key: str) -> str | None:
    """The public prefix of a well-formed API key, else None."""
    match = _API_KEY.fullmatch(key) if len(key) < 100 else None
    return match.group(1) if match else None


def hash_api_key(settings: SecuritySettings, key: str) -> str:
    """HMAC-SHA256 of the whole key: keys are 256-bit random, so a fast keyed hash suffices."""
    pepper = settings.api_key_pepper.get_secret_value().encode()
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


def api_key_matches(settings: SecuritySettings, key: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_api_key(settings, key), secret_hash)
