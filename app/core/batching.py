"""Group commit: concurrent calls on one event loop sent together, without delaying a lone one.

`GroupCommit(run)` hands each `await batch(item)` its share of `run(items)`: the first call goes at
once; calls made while a `run` is in flight wait for it to end and then go together in the next
one (at most `max_items` per run). Under load, one statement and one commit serve many callers;
alone, a call costs one loop iteration more than calling `run` itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")

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
            try:
                results = await self._run([item for item, _ in batch])
            except Exception as exc:  # every caller of this run sees the error, as if alone
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            if len(results) != len(batch):  # a bug in `run`: never leave a caller waiting
                error = RuntimeError(f"group run gave {len(results)} results for {len(batch)}")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
