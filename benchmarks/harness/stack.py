"""The system under test: embedded engines (durable) and taskgate's own processes on them.

taskgate is used only through its commands (`taskgate migrate | users create | api | worker |
scheduler`) and its REST API, so the harness keeps working while the internals change.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from app.devstack import DevStack, StackUrls
from benchmarks.harness.db import Postgres, create_database, plain_dsn
from benchmarks.harness.procs import BenchError, Child, Processes, free_port, say, wait_until

TERMINAL = ("succeeded", "failed", "canceled")
START_TIMEOUT_S = 120.0
PGQUEUER_DATABASE = "pgqueuer_bench"
# Production is durable: anything else here would flatter every PostgreSQL-backed figure.
DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


@dataclass(frozen=True)
class Project:
    id: str
    key: str

    @property
    def auth(self) -> str:
        return f"Bearer {self.key}"

    @property
    def tasks_path(self) -> str:
        return f"/v1/projects/{self.id}/tasks"


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("taskgate")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "app.cli"]


@dataclass
class Taskgate:
    """Engines, a migrated database, `api --workers 2`, `worker --concurrency 2`, `scheduler`."""

    procs: Processes
    scratch: Path
    overrides: Mapping[str, str] = field(default_factory=dict)
    api_workers: int = 2
    # Worker processes, as the peers have; each runs `worker_threads` jobs at once with the
    # `threads` pool (prefork: one job per process).
    worker_concurrency: int = 2
    worker_pool: str = "threads"
    worker_threads: int = 4
    engines: DevStack | None = None
    urls: StackUrls | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    api: Child | None = None
    scheduler: Child | None = None
    workers: list[Child] = field(default_factory=list)
    durability: dict[str, str] = field(default_factory=dict)
    db: Postgres | None = None
    _email: str = ""
    _password: str = ""
    _workers_started: int = 0
    running_concurrency: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stack_urls(self) -> StackUrls:
        if self.urls is None:
            raise BenchError("the stack is not started")
        return self.urls

    @property
    def pg_dsn(self) -> str:
        """taskgate's database, for asyncpg."""
        return plain_dsn(self.stack_urls.database_url)

    @property
    def pg(self) -> Postgres:
        if self.db is None:
            raise BenchError("the stack is not started")
        return self.db

    def start(self) -> None:
        started = time.monotonic()
        self.engines = DevStack(self.scratch / "engines", durable=True, environ={})
        self.urls = self.engines.start()
        admin = plain_dsn(self.urls.database_url, database="postgres")
        self._check_durable(admin)
        create_database(admin, PGQUEUER_DATABASE)
        base = {k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")}
        self.env = {
            **base,
            **self.urls.as_env(),
            # Production: placeholder secrets are refused, so real ones are made for the run.
            "TASKGATE_ENV": "production",
            "TASKGATE_SECURITY__JWT_SECRET": secrets.token_urlsafe(48),
            "TASKGATE_SECURITY__API_KEY_PEPPER": secrets.token_urlsafe(48),
            "TASKGATE_WEBHOOKS__SECRET_KEY": secrets.token_urlsafe(48),
            # The webhook receiver is the harness itself on 127.0.0.1; private networks stay refused.
            "TASKGATE_WEBHOOKS__ALLOW_LOOPBACK": "true",
            **self.overrides,
        }
        self.procs.run("migrate", [*_cli(), "migrate"], self.env)
        self._email = f"bench-{secrets.token_hex(4)}@example.com"
        self._password = secrets.token_urlsafe(18)
        self.procs.run(
            "users-create",
            [*_cli(), "users", "create", self._email, "--password-stdin"],
            self.env,
            stdin=self._password + "\n",
        )
        self.db = Postgres(plain_dsn(self.urls.database_url))
        self.port = free_port()
        self.api = self.procs.start(
            "api",
            [
                *_cli(),
                "api",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.api_workers),
            ],
            self.env,
        )
        self.scheduler = self.procs.start("scheduler", [*_cli(), "scheduler"], self.env)
        self.start_workers(self.worker_concurrency)
        wait_until(self._ready, what="API /health/ready = 200", timeout_s=START_TIMEOUT_S)
        say(f"taskgate stack ready in {time.monotonic() - started:.1f} s on {self.base_url}")

    def _check_durable(self, admin_dsn: str) -> None:
        pg = Postgres(admin_dsn)
        try:
            for name, wanted in DURABLE_SETTINGS.items():
                value = str(pg.value(f"SHOW {name}"))
                self.durability[name] = value
                if value != wanted:
                    raise BenchError(
                        f"PostgreSQL runs with {name}={value}; the bench needs {wanted}"
                    )
            self.durability["wal_sync_method"] = str(pg.value("SHOW wal_sync_method"))
            self.durability["server_version"] = str(pg.value("SHOW server_version"))
        finally:
            pg.close()

    def _ready(self) -> bool:
        if self.api is not None and not self.api.alive():
            raise BenchError(f"taskgate api exited:\n{self.api.log_tail()}")
        try:
            return httpx.get(f"{self.base_url}/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start_workers(self, processes: int) -> None:
        """`processes` worker processes: `taskgate worker --concurrency N` (prefork), or N
        `taskgate worker --pool threads --concurrency <worker_threads>` nodes."""
        self.running_concurrency = processes
        if self.worker_pool == "prefork":
            nodes, per_node = 1, ["--pool", "prefork", "--concurrency", str(processes)]
        else:
            nodes = processes
            per_node = ["--pool", self.worker_pool, "--concurrency", str(self.worker_threads)]
        for _ in range(nodes):
            self.workers.append(self._start_node(per_node))

    def _start_node(self, per_node: Sequence[str]) -> Child:
        self._workers_started += 1
        name = f"worker{self._workers_started}"
        argv = [*_cli(), "worker", *per_node, "--hostname", f"bench-{name}@127.0.0.1"]
        return self.procs.start(name, argv, self.env)

    def restart_worker(self, index: int) -> list[int]:
        """SIGKILL worker node `index` (main and pool) and start a new node in its place, as a
        supervisor would; return the killed pids. The other nodes are left running."""
        if self.worker_pool == "prefork":
            raise BenchError("restart_worker needs one process per node (threads or solo)")
        killed = self.procs.kill9(self.workers[index])
        per_node = ["--pool", self.worker_pool, "--concurrency", str(self.worker_threads)]
        self.workers[index] = self._start_node(per_node)
        return killed

    def stop_workers(self) -> None:
        for worker in self.workers:
            self.procs.stop(worker)
        self.workers = []
        self.running_concurrency = 0

    def kill_workers(self) -> list[int]:
        """SIGKILL every worker process (main and pool) at once; return their pids."""
        killed: list[int] = []
        for worker in self.workers:
            killed += self.procs.kill9(worker)
        self.workers = []
        self.running_concurrency = 0
        return killed

    def api_pids(self) -> list[int]:
        """uvicorn's worker processes: the ones that serve requests."""
        if self.api is None:
            return []
        try:
            children = psutil.Process(self.api.pid).children()
        except psutil.Error:
            return []
        serving = []
        for child in children:
            try:
                if "resource_tracker" not in " ".join(child.cmdline()):
                    serving.append(child.pid)
            except psutil.Error:
                continue
        return serving or [self.api.pid]

    def worker_pids(self) -> list[int]:
        return [pid for worker in self.workers for pid in worker.tree()]

    def check_alive(self) -> None:
        for child in [self.api, self.scheduler, *self.workers]:
            if child is not None and not child.alive():
                raise BenchError(f"taskgate {child.name} exited:\n{child.log_tail()}")

    # --- REST setup: projects, keys and webhooks are made as the owner, over HTTP ---

    def _token(self, client: httpx.Client) -> str:
        response = client.post(
            "/v1/auth/token", data={"username": self._email, "password": self._password}
        )
        _check(response, "sign in")
        token: str = response.json()["access_token"]
        return token

    def new_project(self, name: str) -> Project:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            headers = {"Authorization": f"Bearer {self._token(client)}"}
            created = client.post("/v1/projects", json={"name": name}, headers=headers)
            _check(created, "create a project")
            project_id: str = created.json()["id"]
            key = client.post(
                f"/v1/projects/{project_id}/api-keys", json={"name": "bench"}, headers=headers
            )
            _check(key, "create an API key")
            return Project(project_id, key.json()["key"])

    def add_webhooks(
        self, project: Project, urls: Sequence[str], *, events: Sequence[str] = ("task.succeeded",)
    ) -> list[dict[str, Any]]:
        """Webhook endpoints (an admin's, over HTTP); their bodies, each with its `secret`."""
        endpoints: list[dict[str, Any]] = []
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            headers = {"Authorization": f"Bearer {self._token(client)}"}
            for url in urls:
                created = client.post(
                    f"/v1/projects/{project.id}/webhooks",
                    json={"url": url, "events": list(events)},
                    headers=headers,
                )
                _check(created, "create a webhook endpoint")
                endpoints.append(created.json())
        return endpoints

    def submit(self, project: Project, body: Mapping[str, Any]) -> dict[str, Any]:
        response = httpx.post(
            self.base_url + project.tasks_path,
            json=dict(body),
            headers={"Authorization": project.auth},
            timeout=30,
        )
        _check(response, "submit a task")
        task: dict[str, Any] = response.json()
        return task

    def wait_task(self, task_id: str, project: Project, *, timeout_s: float = 60.0) -> str:
        """Long-poll until the task is terminal; return its status."""
        deadline = time.monotonic() + timeout_s
        status = "queued"
        while time.monotonic() < deadline and status not in TERMINAL:
            self.check_alive()
            response = httpx.get(
                f"{self.base_url}/v1/tasks/{task_id}",
                params={"wait": 5},
                headers={"Authorization": project.auth},
                timeout=30,
            )
            _check(response, "read a task")
            status = response.json()["status"]
        return status

    def probe_workers(self, project: Project, *, timeout_s: float = START_TIMEOUT_S) -> float:
        """Run one `echo` task through; return the seconds it took (workers are up after it)."""
        started = time.monotonic()
        task = self.submit(project, {"type": "echo", "input": {"probe": True}})
        status = self.wait_task(task["id"], project, timeout_s=timeout_s)
        if status != "succeeded":
            raise BenchError(f"the probe task ended {status} (or timed out)")
        return time.monotonic() - started

    def unfinished(self, project: Project) -> int:
        return int(
            self.pg.value(
                "SELECT count(*) FROM tasks WHERE project_id = $1::uuid"
                " AND status NOT IN ('succeeded', 'failed', 'canceled')",
                project.id,
            )
        )

    def wait_finished(self, project: Project, count: int, *, timeout_s: float) -> None:
        """Wait until `count` tasks of the project are terminal (polled in PostgreSQL)."""

        def done() -> bool:
            self.check_alive()
            finished = self.pg.value(
                "SELECT count(*) FROM tasks WHERE project_id = $1::uuid"
                " AND status IN ('succeeded', 'failed', 'canceled')",
                project.id,
            )
            return int(finished) >= count

        wait_until(done, what=f"{count} finished tasks", timeout_s=timeout_s, interval_s=0.05)

    def stop(self) -> None:
        """Stop the processes, then the engines (every wait is bounded)."""
        if self.db is not None:
            try:
                self.db.close()
            except (OSError, asyncpg.PostgresError) as exc:  # cleanup goes on
                say(f"closing the PostgreSQL connection: {exc!r}")
            self.db = None
        self.procs.stop_all()
        if self.engines is not None:
            self.engines.stop()
            self.engines = None


def _check(response: httpx.Response, what: str) -> None:
    if not response.is_success:
        raise BenchError(f"could not {what}: HTTP {response.status_code} {response.text[:500]}")
