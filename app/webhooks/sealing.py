"""Endpoints' signing secrets at rest: sealed with AES-256-GCM under a key from the settings.

A database dump, a replica or a backup then holds no secret that signs deliveries: it takes the
key (`webhooks.secret_key`, kept out of the database) as well. Stored form:
`v1.<key id>.<nonce>.<ciphertext>` (base64url), the key id naming which key sealed it, so the key
can be rotated: set the new one as `secret_key` and the old one as `previous_secret_key`, run
`taskgate webhooks reseal`, then drop the previous key. A value without the `v1.` prefix is one
stored before secrets were sealed (`whsec_…`): it is read as it is and sealed by `reseal`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.core.config import WebhookSettings

VERSION = "v1"
NONCE_BYTES = 12
# Binds a sealed value to its use: it cannot be passed off as another kind of sealed data.
_ASSOCIATED_DATA = b"taskgate webhook signing secret"


class UnsealableSecret(Exception):
    """A stored secret that no configured key opens (a key removed too early, or tampering)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=8)
def _cipher(key_material: str) -> AESGCM:
    # The setting is a secret of any length >= 32 bytes; the AES key is its SHA-256.
    return AESGCM(hashlib.sha256(key_material.encode()).digest())


def _keys(settings: WebhookSettings) -> dict[str, AESGCM]:
    keys = {settings.secret_key_id: _cipher(settings.secret_key.get_secret_value())}
    if settings.previous_secret_key is not None and settings.previous_secret_key_id is not None:
        keys[settings.previous_secret_key_id] = _cipher(
            settings.previous_secret_key.get_secret_value()
        )
    return keys


def is_sealed(stored: str) -> bool:
    return stored.startswith(f"{VERSION}.")


def key_id_of(stored: str) -> str | None:
    """The id of the key that sealed `stored` (None: stored before secrets were sealed)."""
    return stored.split(".", 2)[1] if is_sealed(stored) else None


def seal(secret: str, settings: WebhookSettings) -> str:
    """`secret` as it is stored: sealed under the current key."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = _cipher(settings.secret_key.get_secret_value()).encrypt(
        nonce, secret.encode(), _ASSOCIATED_DATA
    )
    return ".".join((VERSION, settings.secret_key_id, _b64(nonce), _b64(sealed)))


def unseal(stored: str, settings: WebhookSettings) -> str:
    """The secret that `stored` holds; `UnsealableSecret` when no configured key opens it."""
    if not is_sealed(stored):
        return stored
    try:
        _, key_id, nonce, sealed = stored.split(".")
    except ValueError:
        raise UnsealableSecret("a sealed secret with a malformed body") from None
    cipher = _keys(settings).get(key_id)
    if cipher is None:
        raise UnsealableSecret(f"no key {key_id!r} is configured to open this secret")
    try:
        return cipher.decrypt(_unb64(nonce), _unb64(sealed), _ASSOCIATED_DATA).decode()
    except (InvalidTag, ValueError):
        raise UnsealableSecret(f"key {key_id!r} does not open this secret") from None
