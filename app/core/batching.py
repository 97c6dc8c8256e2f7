"""Group commit: concurrent calls on one event loop sent together, without delaying a lone one.

`GroupCommit(run)` hands each `await batch(item)` its share of `run(items)`: the first call goes at
once; calls made while a `run` is in flight wait for it to end and then go together in the next
one (at most `max_items` per run). Under load, one statement and one commit serve many callers;
alone, a call costs one loop iteration more than calling `run` itself.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")
O = TypeVar("O")  # noqa: E741 - an owner (weakly referenced)
K = TypeVar("K", bound=Hashable)

# (the items, in order) -> one result per item, in the same order; an exception in the list is
# raised to that item's caller only (an error of the whole run, raised, reaches every caller).
Run = Callable[[Sequence[I]], Awaitable[Sequence[R | BaseException]]]


class GroupCommit(Generic[I, R]):
    def __init__(self, run: Run[I, R], *, max_items: int = 64) -> None:
        self._run = run
        self.max_items = max_items
        self._pending: list[tuple[I, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.runs = 0  # how many `run`s served how many items: for tests and profiles
        self.items = 0

    async def __call__(self, item: I) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        # A caller that stops waiting (cancelled) cancels its future only: the run still takes
        # its item (a lease taken for nobody expires and is reaped, as after a crash).
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_items]
            del self._pending[: self.max_items]
            self.runs += 1
            self.items += len(batch)
            outcomes: Sequence[R | BaseException]
            try:
                outcomes = await self._run([item for item, _ in batch])
            except Exception as exc:  # every caller of this run sees the error, as if alone
                outcomes = [exc] * len(batch)
            if len(outcomes) != len(batch):  # a bug in `run`: never leave a caller waiting
                error = RuntimeError(f"group run gave {len(outcomes)} results for {len(batch)}")
                outcomes = [error] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)


class Groups(Generic[O, K, I, R]):
    """A `GroupCommit` per (owner, key), made on first use and forgotten with its owner: the owner
    is what the statements run on (a sessionmaker: its pool), the key what makes two statements
    different (their column list, their worker). `make(owner, key)` gives the group's run."""

    def __init__(self, make: Callable[[O, K], Run[I, R]], *, max_items: int = 64) -> None:
        self._make = make
        self.max_items = max_items
        self._by_owner: weakref.WeakKeyDictionary[O, dict[K, GroupCommit[I, R]]] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self, owner: O, key: K) -> GroupCommit[I, R]:
        groups = self._by_owner.setdefault(owner, {})
        if (group := groups.get(key)) is None:
            group = groups[key] = GroupCommit(self._make(owner, key), max_items=self.max_items)
        return group

    def of(self, owner: O) -> list[GroupCommit[I, R]]:
        """The owner's groups so far (for tests and profiles)."""
        return list(self._by_owner.get(owner, {}).values())
