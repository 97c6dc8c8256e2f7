"""The soak's mixed load, from asyncio in the soak process: submits of several task types at a
steady rate, reads, long-polls, presigned uploads, a worker node SIGKILLed and restarted every
`kill_every_s`, and the processes' memory sampled. Everything a request answered is recorded."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx

from benchmarks.harness.stack import Project, Taskgate
from benchmarks.rss import rss_bytes

MIB = 1024 * 1024
# What a valid request of each kind answers; anything else is counted against the run.
EXPECTED_STATUS = {
    "submit": 202,
    "read": 200,
    "long_poll": 200,
    "file_create": 201,
    "file_put": 200,
    "file_complete": 200,
}
# A task type, its share of the submits, and the status it must end in (crashes included:
# every type but `fail` has attempts to spare for a kill).
MIX: tuple[tuple[str, int, str], ...] = (
    ("echo", 35, "succeeded"),
    ("sleep", 20, "succeeded"),
    ("cpu.primes", 15, "succeeded"),
    ("fail", 10, "failed"),
    ("file.checksum", 20, "succeeded"),
)
KILL_WAIT_S = 20.0  # at most this long for the victim node to be running a task
MAX_IN_FLIGHT = 64  # submits and reads waiting for an answer; beyond it a tick is skipped


@dataclass(frozen=True)
class Plan:
    """How much of each kind of load, and for how long."""

    seconds: float
    kill_every_s: float
    submits_per_s: float = 8.0
    reads_per_s: float = 8.0
    long_pollers: int = 4
    long_poll_wait_s: int = 5
    upload_every_s: float = 3.0
    sample_every_s: float = 5.0
    seed: int = 13


@dataclass(frozen=True)
class Submitted:
    type: str
    expect: str
    at: float
    sha256: str | None = None  # a checksum task's file, as uploaded


@dataclass(frozen=True)
class Kill:
    at: float
    node: str
    pids: list[int]
    running_tasks: int  # the node's tasks `running` in PostgreSQL just before the kill


@dataclass
class Record:
    """What the load saw: every request's (kind, time into the run, latency, status)."""

    requests: list[tuple[str, float, float, int]] = field(default_factory=list)
    tasks: dict[str, Submitted] = field(default_factory=dict)
    files: list[tuple[str, str]] = field(default_factory=list)  # ready uploads: (id, sha256)
    kills: list[Kill] = field(default_factory=list)
    samples: list[dict[str, float]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # transport errors, by kind and class
    unexpected: list[str] = field(default_factory=list)  # the first few bad answers, for the log
    skipped: int = 0  # ticks not sent: MAX_IN_FLIGHT requests were waiting

    def statuses(self) -> dict[str, dict[str, int]]:
        counts: dict[str, Counter[str]] = {}
        for kind, _, _, status in self.requests:
            counts.setdefault(kind, Counter())[str(status)] += 1
        return {kind: dict(sorted(c.items())) for kind, c in sorted(counts.items())}

    def errors_of(self, kind: str) -> int:
        """Requests of `kind` that got no answer."""
        return sum(1 for k, _, _, status in self.requests if k == kind and status == 0)


class MixedLoad:
    def __init__(self, tg: Taskgate, project: Project, plan: Plan) -> None:
        self.tg = tg
        self.project = project
        self.plan = plan
        self.record = Record()
        self.rng = random.Random(plan.seed)  # noqa: S311 - a load mix, not a secret
        self._in_flight = 0
        self._started = 0.0
        self._stop = asyncio.Event()
        self._pending: set[asyncio.Task[None]] = set()

    def _now(self) -> float:
        return time.monotonic() - self._started

    async def run(self) -> Record:
        self._started = time.monotonic()
        # Idle connections are dropped before uvicorn's 5 s keep-alive closes them: at equal
        # timeouts a request sent just as the server closes its connection gets no answer, a
        # race of HTTP keep-alive that says nothing about the server.
        limits = httpx.Limits(
            max_connections=MAX_IN_FLIGHT + 16, max_keepalive_connections=32, keepalive_expiry=2
        )
        headers = {"Authorization": self.project.auth}
        async with (
            httpx.AsyncClient(
                base_url=self.tg.base_url, headers=headers, timeout=60, limits=limits
            ) as api,
            httpx.AsyncClient(timeout=60, limits=limits) as s3,
        ):
            async with asyncio.TaskGroup() as group:
                group.create_task(self._clock())
                group.create_task(self._submits(api))
                group.create_task(self._reads(api))
                for _ in range(self.plan.long_pollers):
                    group.create_task(self._long_polls(api))
                group.create_task(self._uploads(api, s3))
                group.create_task(self._kills())
                group.create_task(self._samples())
            if self._pending:
                await asyncio.wait(self._pending, timeout=90)
        return self.record

    async def _clock(self) -> None:
        await asyncio.sleep(self.plan.seconds)
        self._stop.set()

    async def _pause(self, seconds: float) -> bool:
        """Sleep `seconds` or until the load stops; False once it has."""
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=max(seconds, 0))
        except TimeoutError:
            return True
        return False

    async def _request(
        self, client: httpx.AsyncClient, kind: str, method: str, url: str, **kwargs: Any
    ) -> httpx.Response | None:
        """One request, recorded; None when it got no answer."""
        at = self._now()
        started = time.perf_counter()
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self.record.requests.append((kind, at, (time.perf_counter() - started) * 1000, 0))
            self.record.errors[f"{kind}: {type(exc).__name__}"] += 1
            return None
        ms = (time.perf_counter() - started) * 1000
        self.record.requests.append((kind, at, ms, response.status_code))
        if response.status_code != EXPECTED_STATUS[kind] and len(self.record.unexpected) < 20:
            self.record.unexpected.append(
                f"{kind} {method} {url.split('?')[0]}: {response.status_code} {response.text[:300]}"
            )
        return response

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` without waiting for it (open loop), unless too many are in flight."""
        if self._in_flight >= MAX_IN_FLIGHT:
            self.record.skipped += 1
            coro.close()
            return
        self._in_flight += 1
        task = asyncio.ensure_future(coro)
        self._pending.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._in_flight -= 1
            self._pending.discard(finished)

        task.add_done_callback(done)

    async def _ticks(self, per_s: float) -> AsyncIterator[None]:
        """Yield at `per_s` a second, on a schedule (a late tick does not delay the next)."""
        interval = 1 / per_s
        next_at = time.monotonic()
        while not self._stop.is_set():
            yield
            next_at += interval
            if not await self._pause(next_at - time.monotonic()):
                return

    # --- submits and reads ---

    def _body(self, index: int) -> tuple[dict[str, Any], str, str | None]:
        names = [name for name, _, _ in MIX]
        weights = [weight for _, weight, _ in MIX]
        kind = self.rng.choices(names, weights)[0]
        if kind == "file.checksum" and not self.record.files:
            kind = "echo"
        expect = next(outcome for name, _, outcome in MIX if name == kind)
        sha256 = None
        if kind == "echo":
            data: dict[str, Any] = {"n": index, "soak": True}
        elif kind == "sleep":
            data = {"seconds": round(self.rng.uniform(0.05, 0.5), 2)}
        elif kind == "cpu.primes":
            data = {"n": 50_000}
        elif kind == "fail":
            data = {"message": "soak: fails on purpose", "retryable": True}
        else:
            file_id, sha256 = self.rng.choice(self.record.files)
            data = {"file_id": file_id}
        attempts = 2 if kind == "fail" else 3
        return {"type": kind, "input": data, "max_attempts": attempts}, expect, sha256

    async def _submits(self, api: httpx.AsyncClient) -> None:
        index = 0
        async for _ in self._ticks(self.plan.submits_per_s):
            index += 1
            self._spawn(self._submit(api, index))

    async def _submit(self, api: httpx.AsyncClient, index: int) -> None:
        body, expect, sha256 = self._body(index)
        at = self._now()
        response = await self._request(api, "submit", "POST", self.project.tasks_path, json=body)
        if response is not None and response.status_code == 202:
            task_id = response.json()["id"]
            self.record.tasks[task_id] = Submitted(body["type"], expect, at, sha256)

    async def _reads(self, api: httpx.AsyncClient) -> None:
        async for _ in self._ticks(self.plan.reads_per_s):
            if self.record.tasks:
                task_id = self.rng.choice(list(self.record.tasks)[-500:])
                self._spawn(self._read(api, task_id))

    async def _read(self, api: httpx.AsyncClient, task_id: str) -> None:
        await self._request(api, "read", "GET", f"/v1/tasks/{task_id}")

    async def _long_polls(self, api: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            if not self.record.tasks:
                await self._pause(0.2)
                continue
            task_id = next(reversed(self.record.tasks))
            await self._request(
                api,
                "long_poll",
                "GET",
                f"/v1/tasks/{task_id}",
                params={"wait": self.plan.long_poll_wait_s},
            )

    # --- presigned uploads: announce, PUT to S3, complete ---

    async def _uploads(self, api: httpx.AsyncClient, s3: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            await self._upload(api, s3)
            if not await self._pause(self.plan.upload_every_s):
                return

    async def _upload(self, api: httpx.AsyncClient, s3: httpx.AsyncClient) -> None:
        data = self.rng.randbytes(self.rng.randint(1024, 256 * 1024))
        announced = await self._request(
            api,
            "file_create",
            "POST",
            f"/v1/projects/{self.project.id}/files",
            json={
                "filename": f"soak-{len(self.record.files)}.bin",
                "content_type": "application/octet-stream",
                "size": len(data),
            },
        )
        if announced is None or announced.status_code != 201:
            return
        upload = announced.json()
        put = await self._request(
            s3, "file_put", "PUT", upload["upload_url"], content=data, headers=upload["headers"]
        )
        if put is None or put.status_code != 200:
            return
        completed = await self._request(
            api, "file_complete", "POST", f"/v1/files/{upload['id']}/complete"
        )
        if completed is not None and completed.status_code == 200:
            if completed.json()["status"] == "ready":
                self.record.files.append((upload["id"], hashlib.sha256(data).hexdigest()))
            else:
                self.record.unexpected.append(f"file {upload['id']} completed but not ready")

    # --- the worker kills and the memory samples ---

    async def _kills(self) -> None:
        """Kill n at n x `kill_every_s` into the run (a late kill does not delay the next)."""
        for n in itertools.count(1):
            if not await self._pause(n * self.plan.kill_every_s - self._now()):
                return
            if self._now() > self.plan.seconds - 1:
                return
            self.record.kills.append(await self._kill())

    async def _kill(self) -> Kill:
        """SIGKILL worker node 0 (the victim) mid-task and start its replacement, as a supervisor
        would; node 1 runs throughout. The kill waits (bounded) for the victim to be running a
        task, so it is not spent on a node still starting."""
        node = self.tg.workers[0]
        deadline = time.monotonic() + min(self.plan.kill_every_s / 2, KILL_WAIT_S)
        running = await asyncio.to_thread(self._running_on, node.tree())
        while not running and time.monotonic() < deadline and not self._stop.is_set():
            await asyncio.sleep(0.2)
            running = await asyncio.to_thread(self._running_on, node.tree())
        at = self._now()
        pids = await asyncio.to_thread(self.tg.restart_worker, 0)
        return Kill(round(at, 1), node.name, pids, running)

    def _running_on(self, pids: list[int]) -> int:
        """Tasks `running` in PostgreSQL on these processes (`worker` is `<host>:<pid>`)."""
        host = socket.gethostname()
        return int(
            self.tg.pg.value(
                "SELECT count(*) FROM tasks WHERE status = 'running' AND worker = ANY($1::text[])",
                [f"{host}:{pid}" for pid in pids],
            )
        )

    async def _samples(self) -> None:
        while True:
            self.record.samples.append(self._sample())
            if not await self._pause(self.plan.sample_every_s):
                self.record.samples.append(self._sample())
                return

    def _sample(self) -> dict[str, float]:
        """RSS in MiB: the API processes (summed), the steady worker node (never killed) and the
        victim node (restarted at every kill: for the record, not checked)."""
        steady, victim = self.tg.workers[1], self.tg.workers[0]
        return {
            "at": round(self._now(), 1),
            "api_mib": round(sum(rss_bytes(pid) for pid in self.tg.api_pids()) / MIB, 1),
            "steady_worker_mib": round(sum(rss_bytes(pid) for pid in steady.tree()) / MIB, 1),
            "victim_worker_mib": round(sum(rss_bytes(pid) for pid in victim.tree()) / MIB, 1),
        }
