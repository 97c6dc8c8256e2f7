"""The peers, on the same engines: raw Celery workers, Flower, a bare FastAPI app, PgQueuer."""

from __future__ import annotations

import base64
import json
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from benchmarks.harness import celery_peer
from benchmarks.harness.celery_peer import QUEUE
from benchmarks.harness.db import Broker, plain_dsn
from benchmarks.harness.procs import (
    BenchError,
    Child,
    Processes,
    free_port,
    port_open,
    wait_until,
)
from benchmarks.harness.stack import PGQUEUER_DATABASE

START_TIMEOUT_S = 60.0
CELERY_KINDS = ("prefork", "solo")


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


@dataclass
class Peers:
    procs: Processes
    scratch: Path
    base_env: Mapping[str, str]
    redis_url: str
    database_url: str
    broker: Broker = field(init=False)
    flower_port: int = 0
    flower_auth: str = ""
    ceiling_port: int = 0
    ceiling_key: str = ""
    _nodes: int = 0

    def __post_init__(self) -> None:
        # Database 1 of the bench's own Redis: taskgate's queues (database 0) are never touched.
        self.broker = Broker(_redis_db(self.redis_url, 1))
        celery_peer.app.conf.update(broker_url=self.broker.url)  # this process sends the probes

    @property
    def env(self) -> dict[str, str]:
        return {**self.base_env, "BENCH_PEER_BROKER": self.broker.url}

    # --- raw Celery ---

    def start_celery(self, kind: str, processes: int) -> list[Child]:
        """prefork: one node with `processes` pool processes; solo: `processes` solo nodes."""
        if kind not in CELERY_KINDS:
            raise ValueError(kind)
        nodes, pool_args = (
            (1, ["--pool=prefork", f"--concurrency={processes}"])
            if kind == "prefork"
            else (processes, ["--pool=solo"])
        )
        started = []
        for _ in range(nodes):
            self._nodes += 1
            name = f"celery-{kind}{self._nodes}"
            argv = [_bin("celery"), "-A", "benchmarks.harness.celery_peer", "worker", *pool_args]
            argv += ["--loglevel=INFO", "--without-mingle", f"--hostname={name}@127.0.0.1"]
            started.append(self.procs.start(name, argv, self.env))
        return started

    def wait_celery_ready(self, workers: list[Child]) -> None:
        """Every node consumes: one probe per node, all gone from the broker."""
        for _ in workers:
            celery_peer.noop.apply_async()

        def drained() -> bool:
            for worker in workers:
                if not worker.alive():
                    raise BenchError(f"{worker.name} exited:\n{worker.log_tail()}")
            return self.broker.pending([QUEUE]) == 0

        wait_until(drained, what="raw Celery workers to consume", timeout_s=START_TIMEOUT_S)
        time.sleep(0.5)  # the other nodes finish starting: each probe went to whoever was first

    def stop_celery(self, workers: list[Child]) -> None:
        for worker in workers:
            self.procs.stop(worker)

    def wait_celery_empty(self, workers: list[Child], *, timeout_s: float) -> float:
        """Wait until nothing is queued or unacknowledged; return the time.time() it was seen."""

        def empty() -> bool:
            for worker in workers:
                if not worker.alive():
                    raise BenchError(f"{worker.name} exited:\n{worker.log_tail()}")
            return self.broker.pending([QUEUE]) == 0

        wait_until(
            empty, what="the raw Celery queue to drain", timeout_s=timeout_s, interval_s=0.005
        )
        return time.time()

    # --- Flower in front of that Celery ---

    def start_flower(self) -> Child:
        self.flower_port = free_port()
        password = secrets.token_urlsafe(12)
        self.flower_auth = "Basic " + base64.b64encode(f"bench:{password}".encode()).decode()
        argv = [_bin("celery"), "-A", "benchmarks.harness.celery_peer", "flower"]
        argv += [
            "--address=127.0.0.1",
            f"--port={self.flower_port}",
            f"--basic-auth=bench:{password}",
        ]
        flower = self.procs.start("flower", argv, self.env)
        url = f"http://127.0.0.1:{self.flower_port}/api/task/async-apply/bench.noop"

        def answers() -> bool:
            if not flower.alive():
                raise BenchError(f"flower exited:\n{flower.log_tail()}")
            if not port_open(self.flower_port):
                return False
            response = httpx.post(
                url, json={"args": []}, headers={"Authorization": self.flower_auth}, timeout=5
            )
            return response.status_code == 200

        wait_until(answers, what="Flower async-apply to answer 200", timeout_s=START_TIMEOUT_S)
        return flower

    # --- the HTTP ceiling ---

    def start_ceiling(self, workers: int) -> Child:
        self.ceiling_port = free_port()
        self.ceiling_key = "tg_" + secrets.token_urlsafe(32)
        argv = [sys.executable, "-m", "benchmarks.harness.ceiling_app"]
        argv += ["--port", str(self.ceiling_port), "--workers", str(workers)]
        ceiling = self.procs.start(
            "ceiling", argv, {**self.base_env, "BENCH_CEILING_KEY": self.ceiling_key}
        )

        def answers() -> bool:
            if not ceiling.alive():
                raise BenchError(f"the ceiling app exited:\n{ceiling.log_tail()}")
            return port_open(self.ceiling_port)

        wait_until(answers, what="the bare FastAPI app to listen", timeout_s=START_TIMEOUT_S)
        return ceiling

    # --- PgQueuer ---

    @property
    def pgqueuer_dsn(self) -> str:
        return plain_dsn(self.database_url, database=PGQUEUER_DATABASE)

    @staticmethod
    def _pgq_argv(command: str) -> list[str]:
        return [sys.executable, "-m", "benchmarks.harness.pgq_peer", command]

    def _pgq(self, name: str, command: str, *args: str, timeout_s: float = 120.0) -> None:
        self.procs.run(name, [*self._pgq_argv(command), *args], self.base_env, timeout_s=timeout_s)

    def pgqueuer_drain(self, count: int, processes: int, *, timeout_s: float) -> dict[str, float]:
        """Enqueue `count` no-op jobs, drain them with `processes` consumers; time first to last."""
        self._pgq("pgq-install", "install", self.pgqueuer_dsn)
        self._pgq("pgq-enqueue", "enqueue", self.pgqueuer_dsn, str(count))
        outs = [self.scratch / f"pgq-drain-{i}.json" for i in range(processes)]
        consumers = [
            self.procs.start(
                f"pgq-drain{i}",
                [*self._pgq_argv("drain"), self.pgqueuer_dsn, str(out)],
                self.base_env,
            )
            for i, out in enumerate(outs)
        ]
        try:
            wait_until(
                lambda: all(not c.alive() for c in consumers),
                what="PgQueuer consumers to drain the queue",
                timeout_s=timeout_s,
            )
        finally:
            for consumer in consumers:
                self.procs.stop(consumer, timeout_s=5)
        for consumer in consumers:
            if consumer.popen.returncode != 0:
                raise BenchError(f"{consumer.name} failed:\n{consumer.log_tail()}")
        parts = [json.loads(out.read_text()) for out in outs]
        handled = sum(int(p["count"]) for p in parts)
        busy = [p for p in parts if p["count"]]
        if handled < count or not busy:
            raise BenchError(f"PgQueuer handled {handled} of {count} jobs")
        first = min(p["first"] for p in busy)
        last = max(p["last"] for p in busy)
        return {"jobs": handled, "seconds": last - first, "rate": handled / max(last - first, 1e-6)}
