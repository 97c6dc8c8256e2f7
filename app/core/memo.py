"""What a process remembers for a moment: entries that expire, bounded in number, forgettable.

The per-process caches of who is calling (`auth.principal_cache`) and of members' roles
(`projects.member_roles`) are this, keyed their own way. A miss is never remembered.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Bounded: a flood of distinct keys evicts the oldest entries instead of growing the process.
MAX_ENTRIES = 10_000


class Memo(Generic[K, V]):
    def __init__(self, *, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._loading: dict[K, asyncio.Future[V]] = {}

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, value = found
        if time.monotonic() >= expires:
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V, *, ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        self._entries[key] = (time.monotonic() + ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def load_once(self, key: K, load: Callable[[], Awaitable[V]], *, ttl_s: float) -> V:
        """The entry of `key`, else what `load()` answers, kept `ttl_s`. Concurrent misses of one
        key share one load (a burst after an entry expired reads its row once, not once per
        request), and a caller that goes away does not cancel the others'. A failed load is kept
        by no one: every waiter sees its error, the next miss loads again."""
        if (found := self.get(key)) is not None:
            return found
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load(key, load, ttl_s))
            self._loading[key] = pending
            pending.add_done_callback(functools.partial(self._loaded, key))
        return await asyncio.shield(pending)

    async def _load(self, key: K, load: Callable[[], Awaitable[V]], ttl_s: float) -> V:
        value = await load()
        self.put(key, value, ttl_s=ttl_s)
        return value

    def _loaded(self, key: K, done: asyncio.Future[V]) -> None:
        del self._loading[key]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have gone meanwhile

    def drop(self, key: K) -> None:
        """Drop the entry of `key`, if any."""
        self._entries.pop(key, None)

    def forget(self, matches: Callable[[K, V], bool]) -> None:
        """Drop every entry `matches`."""
        stale = [key for key, (_, value) in self._entries.items() if matches(key, value)]
        for key in stale:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
