"""Keys and hand-made (forged) tokens for the token tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from app.core.config import SecuritySettings


def hs256_settings(**fields: Any) -> SecuritySettings:
    values: dict[str, Any] = {"jwt_secret": secrets.token_urlsafe(32), **fields}
    return SecuritySettings(**values)


def ed25519_pem() -> tuple[str, str]:
    """A new Ed25519 key pair as (private PEM, public PEM)."""
    key = ed25519.Ed25519PrivateKey.generate()
    return _pems(key)


def p256_pem() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    return _pems(key)


def _pems(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def claims(settings: SecuritySettings, **overrides: Any) -> dict[str, Any]:
    """Valid access token claims for `settings`; `None` values drop a claim."""
    now = int(datetime.now(UTC).timestamp())
    values: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
        "typ": "access",
        **overrides,
    }
    return {name: value for name, value in values.items() if value is not None}


def sign(payload: dict[str, Any], key: Any, *, algorithm: str = "HS256", **header: Any) -> str:
    """A correctly signed token with any key, algorithm and header (kid `k1` unless given;
    `None` drops a header)."""
    headers = {name: value for name, value in {"kid": "k1", **header}.items() if value is not None}
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unsigned(payload: dict[str, Any], **header: Any) -> str:
    """`alg: none`: no signature at all."""
    head = {"alg": "none", "typ": "JWT", "kid": "k1", **header}
    return f"{_b64(json.dumps(head).encode())}.{_b64(json.dumps(payload).encode())}."


def hmac_signed(payload: dict[str, Any], secret: bytes, **header: Any) -> str:
    """HS256 with any bytes as the secret (PyJWT refuses a PEM key here; an attacker does not)."""
    head = {"alg": "HS256", "typ": "JWT", "kid": "k1", **header}
    signing_input = f"{_b64(json.dumps(head).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def with_payload(token: str, payload: dict[str, Any]) -> str:
    """`token` with its payload replaced and its original signature kept."""
    head, _, signature = token.split(".")
    return f"{head}.{_b64(json.dumps(payload).encode())}.{signature}"
