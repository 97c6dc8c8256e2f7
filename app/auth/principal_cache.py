"""API-key principals remembered per process for a moment, so a burst of requests with one key
authenticates once, not once per request (a row read and a keyed hash each).

An entry lives `ttl_s` (a second by default, `security.principal_cache_s`): a key revoked in
another process stops working within that time; one revoked in this process stops at once
(`forget_api_key`). Entries are keyed by a digest of the whole credential, never the secret
itself, and a miss is never cached (a wrong secret is checked against the database every time).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

from app.auth.principal import Principal

# Bounded: a flood of distinct keys evicts the oldest entries instead of growing the process.
MAX_ENTRIES = 10_000


class PrincipalCache:
    def __init__(self, *, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[float, Principal]] = OrderedDict()
        self._loading: dict[bytes, asyncio.Future[Principal]] = {}

    @staticmethod
    def _digest(credential: str) -> bytes:
        return hashlib.blake2b(credential.encode(), digest_size=20).digest()

    def get(self, credential: str) -> Principal | None:
        digest = self._digest(credential)
        found = self._entries.get(digest)
        if found is None:
            return None
        expires, principal = found
        if time.monotonic() >= expires:
            del self._entries[digest]
            return None
        return principal

    async def load_once(
        self, credential: str, load: Callable[[], Awaitable[Principal]]
    ) -> Principal:
        """`load()` this credential's principal once for every request that asks while it runs:
        when a busy key's entry expires, the requests in flight read its row once, not once each.
        A request that goes away does not cancel the others' load."""
        digest = self._digest(credential)
        pending = self._loading.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(load())
            self._loading[digest] = pending
            pending.add_done_callback(functools.partial(self._loaded, digest))
        return await asyncio.shield(pending)

    def _loaded(self, digest: bytes, done: asyncio.Future[Principal]) -> None:
        del self._loading[digest]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have gone meanwhile

    def put(self, credential: str, principal: Principal, *, ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        digest = self._digest(credential)
        self._entries[digest] = (time.monotonic() + ttl_s, principal)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget_api_key(self, key_id: uuid.UUID) -> None:
        """Drop this key (it was revoked here)."""
        self._forget(lambda principal: principal.actor_id == key_id)

    def forget_api_keys(self, key_ids: Iterable[uuid.UUID]) -> None:
        """Drop these keys (they were revoked here together)."""
        revoked = frozenset(key_ids)
        self._forget(lambda principal: principal.actor_id in revoked)

    def forget_project(self, project_id: uuid.UUID) -> None:
        """Drop every key of this project (it was deleted here)."""
        self._forget(lambda principal: principal.api_key_project_id == project_id)

    def _forget(self, matches: Callable[[Principal], bool]) -> None:
        stale = [digest for digest, (_, found) in self._entries.items() if matches(found)]
        for digest in stale:
            del self._entries[digest]


# One per process: the API's requests share it; the revoking request clears its key.
api_key_principals = PrincipalCache()
