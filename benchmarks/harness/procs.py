"""Child processes of the harness: each in its own session, logged to a file, always stopped.

Every child inherits a marker variable, so whatever one of them started (a Celery pool, a uvicorn
worker) is found and stopped at the end even if its parent is gone.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]
MARKER = "TASKGATE_BENCH_HARNESS_TOKEN"
STOP_TIMEOUT_S = 20.0
KILL_WAIT_S = 5.0
# Below the engines' range (20000-45000) and the kernel's ephemeral range: nothing else we start
# picks a port from here meanwhile.
_PORTS = range(10000, 20000)


class BenchError(Exception):
    """A scenario could not produce its figures (a process died, a wait timed out, ...)."""


def say(text: str = "") -> None:
    """Progress and results of the run, on stdout."""
    print(text, flush=True)  # noqa: T201 - the harness's report


def warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)  # noqa: T201 - the harness's report


def wait_until(
    condition: Callable[[], bool], *, what: str, timeout_s: float, interval_s: float = 0.05
) -> float:
    """Poll `condition` until true; return the seconds waited, or raise BenchError at the limit."""
    started = time.monotonic()
    deadline = started + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise BenchError(f"no {what} within {timeout_s:.0f} s")
        time.sleep(interval_s)
    return time.monotonic() - started


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    for _ in range(200):
        port = _PORTS[secrets.randbelow(len(_PORTS))]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise BenchError("no free TCP port on 127.0.0.1")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tree(self) -> list[int]:
        """The child and every live descendant (a Celery pool, uvicorn's workers)."""
        try:
            parent = psutil.Process(self.pid)
            return [self.pid, *(p.pid for p in parent.children(recursive=True))]
        except psutil.Error:
            return []

    def log_tail(self, lines: int = 30) -> str:
        try:
            data = self.log_path.read_bytes()[-16384:]
        except OSError:
            return ""
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


class Processes:
    """Start, stop and kill the harness's children; `stop_all` leaves nothing behind."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.token = secrets.token_hex(8)
        self.children: list[Child] = []

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        return {**base, MARKER: self.token}

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], *, cwd: Path = REPO_ROOT
    ) -> Child:
        log_path = self.logs / f"{name}.log"
        with log_path.open("ab") as log_file:
            popen = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                list(argv),
                cwd=cwd,
                env=self.env(env),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop them ourselves
            )
        child = Child(name, popen, log_path)
        self.children.append(child)
        return child

    def run(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        stdin: str | None = None,
        timeout_s: float = 180.0,
    ) -> str:
        """Run a command to completion (in its own session); return its stdout."""
        log_path = self.logs / f"{name}.log"
        popen = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            list(argv),
            cwd=REPO_ROOT,
            env=self.env(env),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        child = Child(name, popen, log_path)
        self.children.append(child)
        try:
            out, err = popen.communicate(
                input=stdin.encode() if stdin is not None else None, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            self.stop(child, timeout_s=1.0)
            raise BenchError(f"{name} did not finish within {timeout_s:.0f} s") from None
        finally:
            if popen.poll() is not None:
                self.children.remove(child)
        with log_path.open("ab") as log_file:
            log_file.write(err)
        if popen.returncode != 0:
            tail = err.decode(errors="replace")[-3000:]
            raise BenchError(f"{name} exited with code {popen.returncode}:\n{tail}")
        return out.decode().strip()

    def stop(self, child: Child, *, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the child's process group, wait, then SIGKILL whatever is left of it."""
        tree = child.tree()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGTERM)
        try:
            child.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            warn(f"{child.name} (pid {child.pid}) ignored SIGTERM for {timeout_s:.0f} s: SIGKILL")
        self._kill(child, tree)
        if child in self.children:
            self.children.remove(child)

    def kill9(self, child: Child) -> list[int]:
        """SIGKILL the child and every process it started, at once; return their pids."""
        tree = child.tree()
        self._kill(child, tree)
        if child in self.children:
            self.children.remove(child)
        return tree

    def _kill(self, child: Child, tree: Sequence[int]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        for pid in tree:  # a descendant that left the group (setsid) still goes
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(timeout=KILL_WAIT_S)

    def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            self.stop(child, timeout_s=10.0)

    def leftovers(self) -> list[str]:
        """SIGKILL any process that still carries our marker; describe each one."""
        found: list[str] = []
        for proc in psutil.process_iter(["pid", "name"]):
            if proc.pid == os.getpid():
                continue
            try:
                if proc.environ().get(MARKER) != self.token:
                    continue
                proc.kill()
            except psutil.Error:
                continue
            found.append(f"pid {proc.pid} ({proc.info['name']})")
        return found


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def interrupt_on_sigterm() -> None:
    signal.signal(signal.SIGTERM, _raise_interrupt)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while cleaning up (every wait is bounded), then re-raise."""
    received: list[int] = []

    def remember(signum: int, frame: FrameType | None) -> None:
        del frame
        received.append(signum)

    previous = {sig: signal.signal(sig, remember) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    if received:
        raise KeyboardInterrupt
