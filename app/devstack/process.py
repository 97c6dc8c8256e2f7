"""Process plumbing shared by the engines launcher and the dev supervisor.

Children are spawned from one long-lived daemon thread: Linux delivers the parent-death signal
(`PR_SET_PDEATHSIG`) when the *thread* that forked a child exits, so spawning from short-lived
worker threads would kill the engines as soon as the thread finished.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_SPAWN_TIMEOUT_S = 30.0
_KILL_WAIT_S = 5.0


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


# Loaded in the parent: the forked child must not import or allocate much before exec.
_LIBC = _load_libc()


def _death_signal_setter(sig: signal.Signals) -> Callable[[], None] | None:
    """Return a preexec_fn that makes the child receive `sig` when its parent dies (Linux)."""
    libc = _LIBC
    if libc is None:
        return None
    parent_pid = os.getpid()
    prctl = libc.prctl
    signal_number = int(sig)

    def set_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signal_number, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl: act as if it just did
            os.kill(os.getpid(), signal_number)

    return set_death_signal


@dataclass(frozen=True)
class _SpawnRequest:
    argv: list[str]
    env: dict[str, str]
    cwd: Path | None
    stdout: IO[bytes] | int | None
    death_signal: signal.Signals
    result: Future[subprocess.Popen[bytes]]


class _Spawner:
    """Run `subprocess.Popen` on a daemon thread that lives as long as the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner_pid = -1
        self._requests: queue.SimpleQueue[_SpawnRequest] = queue.SimpleQueue()

    def popen(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path | None,
        stdout: IO[bytes] | int | None,
        death_signal: signal.Signals,
    ) -> subprocess.Popen[bytes]:
        """Spawn `argv` in a new session from the spawner thread and return its Popen."""
        self._ensure_thread()
        request = _SpawnRequest(
            argv=list(argv),
            env=dict(env),
            cwd=cwd,
            stdout=stdout,
            death_signal=death_signal,
            result=Future(),
        )
        self._requests.put(request)
        return request.result.result(timeout=_SPAWN_TIMEOUT_S)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._owner_pid == os.getpid():
                return
            # First use, or we are a forked copy whose spawner thread did not survive the fork.
            self._requests = queue.SimpleQueue()
            threading.Thread(
                target=self._serve, args=(self._requests,), name="devstack-spawner", daemon=True
            ).start()
            self._owner_pid = os.getpid()

    @staticmethod
    def _serve(requests: queue.SimpleQueue[_SpawnRequest]) -> None:
        while True:
            request = requests.get()
            if not request.result.set_running_or_notify_cancel():
                continue
            try:
                process = subprocess.Popen(  # noqa: S603 - argv built by this package, no shell
                    request.argv,
                    env=request.env,
                    cwd=request.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=request.stdout,
                    stderr=subprocess.STDOUT if request.stdout is not None else None,
                    start_new_session=True,  # Ctrl-C in a terminal reaches the supervisor only
                    preexec_fn=_death_signal_setter(request.death_signal),
                )
            except BaseException as exc:  # handed to the caller, which re-raises it
                request.result.set_exception(exc)
            else:
                request.result.set_result(process)


_spawner = _Spawner()


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | None = None,
    log_path: Path | None = None,
    death_signal: signal.Signals = signal.SIGTERM,
) -> subprocess.Popen[bytes]:
    """Start a child in its own session that gets `death_signal` if this process dies."""
    if log_path is None:
        return _spawner.popen(argv, env=env, cwd=cwd, stdout=None, death_signal=death_signal)
    with log_path.open("ab") as log_file:
        return _spawner.popen(argv, env=env, cwd=cwd, stdout=log_file, death_signal=death_signal)


def is_alive(pid: int) -> bool:
    """Tell whether `pid` is a running process (a zombie counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return _signal_zero(pid)
    state = stat.rpartition(")")[2].split()[:1]
    return state not in (["Z"], ["X"])


def _signal_zero(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_members(pgid: int) -> list[int]:
    """PIDs of the live (non-zombie) processes in process group `pgid`."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited while we looked
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def process_exe(pid: int) -> Path | None:
    """Return the resolved executable of `pid`, or None when it cannot be read."""
    try:
        target = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    return Path(target.removesuffix(" (deleted)")).resolve()


def process_cwd(pid: int) -> Path | None:
    """Return the resolved working directory of `pid`, or None when it cannot be read."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")).resolve()
    except OSError:
        return None


def reap(pid: int) -> None:
    """Collect `pid` if it is our own dead child; a no-op otherwise."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def signal_pid(pid: int, sig: signal.Signals) -> None:
    """Send `sig` to `pid` unless it is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_pid_gone(pid: int, *, timeout_s: float) -> None:
    """Wait for a process we did not spawn in this run (a leftover) to exit; SIGKILL it if late."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reap(pid)
        if not is_alive(pid):
            return
        time.sleep(0.05)
    log.warning("leftover process ignored its stop signal, killing it", extra={"pid": pid})
    signal_pid(pid, signal.SIGKILL)
    deadline = time.monotonic() + _KILL_WAIT_S
    while time.monotonic() < deadline and is_alive(pid):
        reap(pid)
        time.sleep(0.05)


def stop_pid(pid: int, sig: signal.Signals, *, timeout_s: float) -> None:
    """Stop a leftover process: signal, wait, then SIGKILL."""
    if is_alive(pid):
        signal_pid(pid, sig)
        wait_pid_gone(pid, timeout_s=timeout_s)


def signal_process(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send `sig` to a child unless it has already exited."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)


def kill_group(pgid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """Signal every process of a process group; a vanished group is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_process(process: subprocess.Popen[bytes], *, timeout_s: float, name: str) -> None:
    """Wait for a signalled child; SIGKILL its whole process group when it overstays."""
    try:
        process.wait(timeout=max(timeout_s, 0.0))
    except subprocess.TimeoutExpired:
        log.warning(
            "child ignored its stop signal, killing it", extra={"child": name, "pid": process.pid}
        )
        # The whole group: a SIGKILLed leader would leave postgres backends or workers behind.
        kill_group(process.pid)
        process.wait(timeout=_KILL_WAIT_S)


# Ports handed out by this process recently: bind-and-close cannot tell two of our own concurrent
# pickers apart, so we never hand out the same port twice in a short window.
_reserved_lock = threading.Lock()
_reserved: dict[int, float] = {}
_RESERVATION_S = 60.0


def _reserve(ports: Sequence[int]) -> bool:
    now = time.monotonic()
    with _reserved_lock:
        for port, at in list(_reserved.items()):
            if now - at > _RESERVATION_S:
                del _reserved[port]
        if any(port in _reserved for port in ports):
            return False
        for port in ports:
            _reserved[port] = now
        return True


def release_ports(ports: Sequence[int]) -> None:
    """Let this process hand out `ports` again (their server has stopped)."""
    with _reserved_lock:
        for port in ports:
            _reserved.pop(port, None)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers bind: a port whose old connections linger in TIME_WAIT counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if _reserve([port]):
            return port
    raise RuntimeError("no free TCP port on 127.0.0.1")


def free_port_pair(offset: int, *, low: int = 20000, high: int = 45000) -> int:
    """Return a port P such that P and P + offset are both free on 127.0.0.1."""
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randrange(low, high)
        if port + offset > 65535:
            continue
        if _bindable(port) and _bindable(port + offset) and _reserve([port, port + offset]):
            return port
    raise RuntimeError(f"no free pair of TCP ports {offset} apart on 127.0.0.1")


def claim_port_pair(port: int, offset: int) -> bool:
    """Claim a previously used port P (and P + offset) again if both are still free."""
    return (
        port > 0
        and port + offset <= 65535
        and _bindable(port)
        and _bindable(port + offset)
        and _reserve([port, port + offset])
    )


def port_open(port: int, *, timeout_s: float = 0.2) -> bool:
    """Tell whether something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def log_tail(path: Path, *, lines: int = 30, max_bytes: int = 16384) -> str:
    """Return the last `lines` lines of a log file (empty if it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])
