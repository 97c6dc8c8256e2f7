"""Who is calling, remembered per process for a moment, so a burst of requests with one
credential authenticates once, not once per request (a row read and a keyed hash for an API
key; the user's row for an access token).

An entry lives `ttl_s` (a second by default, `security.principal_cache_s`): a key revoked or a user
deactivated in another process stops working within that time; in this process at once
(`forget_api_key`, `forget_user`). Entries are keyed by a digest of the whole credential, never
the secret itself, and a miss is never cached (a wrong secret is checked against the database
every time).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Iterable

from app.auth.principal import Principal
from app.core.memo import MAX_ENTRIES, Memo


class PrincipalCache:
    def __init__(self, *, max_entries: int = MAX_ENTRIES) -> None:
        self._memo: Memo[bytes, Principal] = Memo(max_entries=max_entries)

    @staticmethod
    def _digest(credential: str) -> bytes:
        return hashlib.blake2b(credential.encode(), digest_size=20).digest()

    def get(self, credential: str) -> Principal | None:
        return self._memo.get(self._digest(credential))

    def put(self, credential: str, principal: Principal, *, ttl_s: float) -> None:
        self._memo.put(self._digest(credential), principal, ttl_s=ttl_s)

    async def load_once(
        self, credential: str, load: Callable[[], Awaitable[Principal]], *, ttl_s: float
    ) -> Principal:
        """The credential's principal, else `load()`'s, remembered `ttl_s` (`Memo.load_once`:
        the requests in flight when a busy key's entry expires read its row once)."""
        return await self._memo.load_once(self._digest(credential), load, ttl_s=ttl_s)

    def forget_api_key(self, key_id: uuid.UUID) -> None:
        """Drop this key (it was revoked here)."""
        self._memo.forget(lambda _, principal: principal.actor_id == key_id)

    def forget_api_keys(self, key_ids: Iterable[uuid.UUID]) -> None:
        """Drop these keys (they were revoked here together)."""
        revoked = frozenset(key_ids)
        self._memo.forget(lambda _, principal: principal.actor_id in revoked)

    def forget_project(self, project_id: uuid.UUID) -> None:
        """Drop every key of this project (it was deleted here)."""
        self._memo.forget(lambda _, principal: principal.api_key_project_id == project_id)

    def forget_user(self, user_id: uuid.UUID) -> None:
        """Drop every access token of this user (they were deactivated here)."""
        self._memo.forget(
            lambda _, principal: principal.user is not None and principal.actor_id == user_id
        )


# One per process: the API's requests share it; the revoking request clears its key.
principals = PrincipalCache()
