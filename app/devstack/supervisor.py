"""A small process supervisor for `taskgate dev`: keep the API, worker and scheduler running."""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from app.devstack import process

log = logging.getLogger(__name__)

_GROUP_POLL_S = 0.05
_KILL_WAIT_S = 5.0


@dataclass
class ChildSpec:
    """One supervised command; `env` is its whole environment."""

    name: str
    argv: list[str]
    env: dict[str, str]


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0  # consecutive quick exits, for the backoff
    restart_at: float | None = None


class Supervisor:
    """Run children in their own process groups, restart those that exit, stop them all."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        log: logging.Logger,
        restart_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique: {names}")
        self._children = [_Child(spec) for spec in specs]
        self._log = log
        self._restart_backoff_s = restart_backoff_s
        self._max_backoff_s = max_backoff_s
        self._stopped = False

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the children running now, by name."""
        return {
            child.spec.name: child.process.pid
            for child in self._children
            if child.process is not None and child.process.poll() is None
        }

    def start(self) -> None:
        """Start every child."""
        self._stopped = False
        for child in self._children:
            if child.process is None:
                self._spawn(child)

    def poll(self) -> None:
        """Notice children that exited and restart them, backing off while they keep failing."""
        if self._stopped:
            return
        now = time.monotonic()
        for child in self._children:
            if child.process is not None and child.process.poll() is not None:
                self._schedule_restart(child, now)
            if child.process is None and child.restart_at is not None and now >= child.restart_at:
                child.restart_at = None
                self._spawn(child)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every child's process group, wait, then SIGKILL whatever is left."""
        self._stopped = True
        for child in self._children:
            child.restart_at = None
            if child.process is not None:
                process.kill_group(child.process.pid, signal.SIGTERM)
        running = [child for child in self._children if child.process is not None]
        deadline = time.monotonic() + timeout_s
        for child in running:
            self._wait_group(child, deadline)
        for child in running:
            child.process = None

    def _spawn(self, child: _Child) -> None:
        popen = process.spawn(child.spec.argv, env=child.spec.env)
        child.process = popen
        child.started_at = time.monotonic()
        self._log.info("child started", extra={"child": child.spec.name, "pid": popen.pid})

    def _schedule_restart(self, child: _Child, now: float) -> None:
        exited = child.process
        if exited is None:
            return
        child.process = None
        # What the child left behind (uvicorn or celery workers) would hold its port or queue.
        process.kill_group(exited.pid, signal.SIGKILL)
        if now - child.started_at >= self._max_backoff_s:
            child.failures = 0  # it ran fine for a while: this is a fresh failure
        delay = min(self._restart_backoff_s * 2**child.failures, self._max_backoff_s)
        child.failures += 1
        child.restart_at = now + delay
        self._log.warning(
            "child exited, restarting",
            extra={
                "child": child.spec.name,
                "pid": exited.pid,
                "returncode": exited.returncode,
                "restart_in_s": delay,
            },
        )

    def _wait_group(self, child: _Child, deadline: float) -> None:
        popen = child.process
        if popen is None:
            return
        pgid = popen.pid
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=max(deadline - time.monotonic(), 0.0))
        while process.group_members(pgid) and time.monotonic() < deadline:
            time.sleep(_GROUP_POLL_S)
        leftovers = process.group_members(pgid)
        if leftovers or popen.poll() is None:
            self._log.warning(
                "child ignored SIGTERM, killing its process group",
                extra={"child": child.spec.name, "pid": pgid, "leftovers": leftovers},
            )
            process.kill_group(pgid, signal.SIGKILL)
            popen.wait(timeout=_KILL_WAIT_S)
        self._log.info(
            "child stopped",
            extra={"child": child.spec.name, "pid": pgid, "returncode": popen.returncode},
        )
