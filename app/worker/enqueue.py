"""Enqueueing Celery jobs: the one way any domain hands work to the workers.

A domain calls `enqueue(session, Job.x, arg, queue=…)` inside its transaction. The messages are
published once that transaction has committed (never on rollback), pipelined in one round trip,
through this process's `Publisher` (Celery messages written straight onto the Redis queues,
`wire.py`): in the API in the background, so the
response does not wait for the broker; in workers and the scheduler before `transaction()`
returns. A message the broker refuses goes to its `unsent` callback, in a short transaction of
its own, which marks its rows for the scheduler to publish again. After a broker failure the
breaker skips the broker for `breaker_s`, so an outage costs one timeout, not one per message.

Domains never talk to Celery directly; the API enqueues by job name and never imports job code.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core import tracing
from app.core.breaker import Breaker
from app.core.context import request_id_var
from app.core.db import after_commit, sessionmaker_of, transaction
from app.worker import wire
from app.worker.names import BATCHED_JOBS, Job, Queue
from app.worker.wire import Shown

log = logging.getLogger(__name__)

# Seconds past a job's own timeout before Celery kills the pool process still running it.
HARD_LIMIT_GRACE_S = 30

# What the broker refused to take: the domain marks these rows for the scheduler.
Unsent = Callable[[AsyncSession, Sequence["Message"]], Awaitable[None]]

# Publishing is plain Redis commands (`wire.py`): no kombu client, no kombu errors.
BROKER_ERRORS = (RedisError, OSError)


@dataclass(frozen=True)
class Message:
    job: Job
    args: tuple[str, ...]
    queue: Queue
    time_limit: int | None = None
    # What Flower shows of the job, and the request that caused it (the `request_id` header).
    shown: Shown | None = None
    request_id: str | None = None
    # The trace context of the span that enqueued it (`traceparent`…), when tracing is on.
    trace: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True)
class _Pending:
    message: Message
    unsent: Unsent | None


class Publisher:
    """Pushes jobs onto their broker queues; one per process. `background` (the API) publishes
    after commit without making the caller wait: whatever commits while a push is under way goes
    in the next one, so under load many messages share one round trip, and a lone one waits for
    nothing."""

    def __init__(
        self,
        redis: Redis,
        *,
        breaker_s: float,
        background: bool = False,
        batch: int = 1,
        batch_backlog: int = 32,
    ) -> None:
        """`batch`, `batch_backlog`: up to `batch` items of a job in `BATCHED_JOBS` share one
        message while their queue held at least `batch_backlog` messages at the last push."""
        self.redis = redis
        self.background = background
        self.batch = batch
        self.batch_backlog = batch_backlog
        self._lengths: dict[Queue, int] = {}
        self.breaker = Breaker(breaker_s)
        self._backlog: list[tuple[Sequence[_Pending], async_sessionmaker[AsyncSession] | None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.sent = 0
        self.refused = 0

    @property
    def is_open(self) -> bool:
        """True while the breaker is open: the broker failed less than `breaker_s` ago."""
        return self.breaker.is_open

    async def send(self, messages: Sequence[Message]) -> list[Message]:
        """Publish in one pipelined round trip; return the messages that were not published
        (all of them on a failure: a message pushed twice runs once, guarded by its rows)."""
        if not messages:
            return []
        if self.is_open:
            return self._refused(messages)
        pushed = self._grouped(messages)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for message in pushed:
                    shown = message.shown or _UNNAMED
                    pipe.lpush(
                        message.queue.value,
                        wire.task_message(
                            message.job.value,
                            message.args,
                            queue=message.queue.value,
                            time_limit=message.time_limit,
                            task_id=shown.id,
                            shadow=shown.name,
                            argsrepr=shown.args,
                            request_id=message.request_id,
                            trace=message.trace,
                        ),
                    )
                lengths = await pipe.execute()
        except BROKER_ERRORS as exc:
            self.breaker.trip()
            log.warning(
                "publish failed; the scheduler will publish later",
                extra={"jobs": len(messages), "error": repr(exc)},
            )
            return self._refused(messages)
        for message, length in zip(pushed, lengths, strict=True):
            self._lengths[message.queue] = int(length)  # LPUSH answers the queue's new length
        self.sent += len(messages)
        return []

    def _grouped(self, messages: Sequence[Message]) -> list[Message]:
        """`messages` as pushed: batched jobs for a backed-up queue joined, `batch` at most."""
        if self.batch <= 1:
            return list(messages)
        pushed: list[Message] = []
        groups: dict[tuple[Job, Queue], list[Message]] = {}
        for message in messages:
            if message.job not in BATCHED_JOBS or (
                self._lengths.get(message.queue, 0) < self.batch_backlog
            ):
                pushed.append(message)
                continue
            group = groups.setdefault((message.job, message.queue), [])
            group.append(message)
            if len(group) == self.batch:
                pushed.append(_joined(group))
                group.clear()
        pushed.extend(_joined(group) for group in groups.values() if group)
        return pushed

    def _refused(self, messages: Sequence[Message]) -> list[Message]:
        self.refused += len(messages)
        return list(messages)

    async def publish(
        self,
        pending: Sequence[_Pending],
        sessionmaker: async_sessionmaker[AsyncSession] | None,
    ) -> None:
        unsent = await self.send([item.message for item in pending])
        if unsent:
            await _hand_back(pending, unsent, sessionmaker)

    def publish_after_commit(
        self,
        pending: Sequence[_Pending],
        sessionmaker: async_sessionmaker[AsyncSession] | None,
    ) -> Awaitable[None] | None:
        if not self.background:
            return self.publish(pending, sessionmaker)
        self._backlog.append((pending, sessionmaker))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        return None

    async def _flush(self) -> None:
        while self._backlog:
            batch, self._backlog = self._backlog, []
            unsent = await self.send([item.message for pending, _ in batch for item in pending])
            if unsent:
                for pending, sessionmaker in batch:
                    await _hand_back(pending, unsent, sessionmaker)

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait for background publishes (on shutdown, and in tests)."""
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher}, timeout=timeout_s)

    async def close(self) -> None:
        await self.drain()
        await self.redis.aclose()


_UNNAMED = Shown()


def _joined(group: Sequence[Message]) -> Message:
    """One message for the items of `group` (one job, one queue), with the longest time limit,
    an id of its own, and the request id and trace context its items share (none if they
    differ: the job then starts a trace of its own)."""
    if len(group) == 1:
        return group[0]
    limits = [message.time_limit for message in group]
    longest = None if None in limits else max(limit for limit in limits if limit is not None)
    args = tuple(arg for message in group for arg in message.args)
    request_ids = {message.request_id for message in group}
    request_id = request_ids.pop() if len(request_ids) == 1 else None
    traces = {message.trace for message in group}
    trace = traces.pop() if len(traces) == 1 else None
    shown = wire.joined([message.shown for message in group])
    return Message(group[0].job, args, group[0].queue, longest, shown, request_id, trace)


async def _hand_back(
    pending: Sequence[_Pending],
    unsent: Sequence[Message],
    sessionmaker: async_sessionmaker[AsyncSession] | None,
) -> None:
    """Give each refused message to its `unsent` callback, grouped, in one short transaction."""
    refused = set(map(id, unsent))
    groups: dict[Unsent, list[Message]] = {}
    for item in pending:
        if item.unsent is not None and id(item.message) in refused:
            groups.setdefault(item.unsent, []).append(item.message)
    if not groups:
        return
    if sessionmaker is None:  # a bare session: the scheduler finds the rows once they are stale
        log.warning("unsent jobs left for the scheduler", extra={"count": len(unsent)})
        return
    try:
        async with transaction(sessionmaker) as session:
            for callback, messages in groups.items():
                await callback(session, messages)
    except Exception:  # the scheduler re-publishes stale dispatches anyway
        log.exception("could not mark unsent jobs", extra={"count": len(unsent)})


_process_publisher: Publisher | None = None
_publisher_override: contextvars.ContextVar[Publisher | None] = contextvars.ContextVar(
    "taskgate_publisher", default=None
)
_PENDING_KEY = "taskgate_enqueued"


def configure(publisher: Publisher | None) -> None:
    """Make `publisher` the one this process publishes through (None: publish nothing)."""
    global _process_publisher
    _process_publisher = publisher


def current() -> Publisher | None:
    return _publisher_override.get() or _process_publisher


@contextlib.contextmanager
def using(publisher: Publisher) -> Iterator[None]:
    """Publish through `publisher` inside this block (and the coroutines it starts)."""
    token = _publisher_override.set(publisher)
    try:
        yield
    finally:
        _publisher_override.reset(token)


@dataclass
class Tally:
    sent: int = 0
    refused: int = 0


@contextlib.contextmanager
def tally() -> Iterator[Tally]:
    """Count what the current publisher sent and refused inside this block (filled on exit);
    with a publisher that does not publish in the background, that is all the block enqueued."""
    counts = Tally()
    publisher = current()
    sent, refused = (publisher.sent, publisher.refused) if publisher is not None else (0, 0)
    try:
        yield counts
    finally:
        if publisher is not None:
            counts.sent, counts.refused = publisher.sent - sent, publisher.refused - refused


def available() -> bool:
    """Whether a message enqueued now is likely to be published: a publisher, breaker closed."""
    publisher = current()
    return publisher is not None and not publisher.is_open


def enqueue(
    session: AsyncSession,
    job: Job,
    *args: str,
    queue: Queue,
    timeout_s: float | None = None,
    unsent: Unsent | None = None,
    shown: Shown | None = None,
    request_id: str | None = None,
) -> None:
    """Publish `job(*args)` on `queue` once the session's transaction commits.

    `timeout_s`: the job's own time box; Celery kills it `HARD_LIMIT_GRACE_S` later. `unsent`:
    called with what the broker refused (or all of it, when this process has no publisher), in
    a transaction of its own, to leave the rows for the scheduler. `shown`: how Flower shows it.
    `request_id`: the request that caused the job, for its log lines (default: the current one).
    """
    item = _Pending(_message(job, args, queue, timeout_s, shown, request_id), unsent)
    batch: list[_Pending] | None = session.info.get(_PENDING_KEY)
    if batch is not None:
        batch.append(item)
        return
    batch = session.info[_PENDING_KEY] = [item]
    publisher = current()
    sessionmaker = sessionmaker_of(session)

    def flush() -> Awaitable[None] | None:
        session.info.pop(_PENDING_KEY, None)
        if publisher is None:
            return _hand_back(batch, [pending.message for pending in batch], sessionmaker)
        return publisher.publish_after_commit(batch, sessionmaker)

    after_commit(session, flush)


def _message(
    job: Job,
    args: Sequence[str],
    queue: Queue,
    timeout_s: float | None,
    shown: Shown | None,
    request_id: str | None = None,
) -> Message:
    time_limit = None if timeout_s is None else int(timeout_s) + HARD_LIMIT_GRACE_S
    request_id = request_id or request_id_var.get()
    # Taken here, in the caller's context: the push may run later in another task's.
    trace = tracing.headers() if tracing.ENABLED else None
    return Message(job, tuple(args), queue, time_limit, shown, request_id, trace)


def enqueue_committed(
    sessionmaker: async_sessionmaker[AsyncSession] | None,
    job: Job,
    args_each: Sequence[Sequence[str]],
    *,
    queue: Queue,
    timeout_s: float | None = None,
    unsent: Unsent | None = None,
    shown_each: Sequence[Shown | None] | None = None,
    request_id: str | None = None,
) -> Awaitable[None] | None:
    """`enqueue` for rows already committed (a statement that committed by itself): one
    `job(*args)` per item of `args_each` (shown as the same item of `shown_each`), published
    now, as `enqueue` would after a commit. `request_id`: as for `enqueue`."""
    shown = shown_each if shown_each is not None else [None] * len(args_each)
    batch = [
        _Pending(_message(job, args, queue, timeout_s, item_shown, request_id), unsent)
        for args, item_shown in zip(args_each, shown, strict=True)
    ]
    publisher = current()
    if publisher is None:
        return _hand_back(batch, [pending.message for pending in batch], sessionmaker)
    return publisher.publish_after_commit(batch, sessionmaker)


# A key the scheduler keeps in the broker; gone means the broker lost its data since.
BROKER_MARK_KEY = "taskgate:broker-mark"


class BrokerWatch:
    """Notices a broker that lost its data (FLUSHALL, or a restart without persistence): the
    mark it left is gone (or another was left by a peer that noticed first). Every message
    published before then may be lost; the scheduler then publishes every waiting row again at
    once instead of waiting `redispatch_after_s` (a twin message finds nothing to lease)."""

    def __init__(self) -> None:
        self._mark: str | None = None

    async def lost(self, redis: Redis) -> bool:
        """Whether the broker lost its data since the last call (False when it cannot say)."""
        try:
            current = await redis.get(BROKER_MARK_KEY)
            if current is None:
                await redis.set(BROKER_MARK_KEY, uuid.uuid4().hex, nx=True)
                current = await redis.get(BROKER_MARK_KEY)
        except (RedisError, OSError):
            return False
        seen = current.decode() if isinstance(current, bytes) else current
        lost = self._mark is not None and seen != self._mark
        self._mark = seen
        return lost


async def empty_queues(redis: Redis, queues: Collection[Queue]) -> set[Queue]:
    """The queues that hold no message now (none when Redis cannot say): a row published long
    ago whose queue has drained was lost with the broker, not merely waiting its turn."""
    try:
        lengths = [int(await redis.llen(queue.value)) for queue in queues]
    except (RedisError, OSError):
        return set()
    return {queue for queue, length in zip(queues, lengths, strict=True) if length == 0}
