"""How long `taskgate dev` takes to answer `/health/ready` = 200, cold and warm.

Cold is an empty data dir (initdb, bucket, every migration); warm is the same data dir again. The
engines alone (`DevStack.start()`, in this process) are measured in the same run as the baseline,
so the difference is what migrations, imports and the API start add. Each `taskgate dev` is then
stopped with SIGINT (Ctrl-C) and must exit cleanly, leaving no process behind.

    .venv/bin/python -m benchmarks.dev_startup [--runs N | --short] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from app.devstack import DevStack
from app.devstack.process import log_tail

REPO_ROOT = Path(__file__).resolve().parent.parent

READY_TIMEOUT_S = 120.0
POLL_INTERVAL_S = 0.05
REQUEST_TIMEOUT_S = 1.0
STOP_TIMEOUT_S = 60.0  # run_dev gives its children 10 s and each engine up to 15 s
KILL_WAIT_S = 5.0
LEFTOVER_GRACE_S = 1.0  # a process may still be exiting when its parent has returned
DEFAULT_RUNS = 5

# Every descendant of a `taskgate dev` inherits this variable, even those in their own sessions
# (engines, API, worker), so leftovers are found after their parent has gone.
_MARKER = "BENCHMARK_DEV_STARTUP_TOKEN"
# Below 20000 and below the kernel's ephemeral range: the engines pick their ports in
# 20000-45000 and from the ephemeral range, so a port from here cannot be taken by them meanwhile.
_API_PORTS = range(10000, 20000)


@dataclass(frozen=True)
class Phase:
    key: str
    label: str


DEV_COLD = Phase("dev_cold", "taskgate dev, cold: spawn to ready")
DEV_WARM = Phase("dev_warm", "taskgate dev, warm: spawn to ready")
ENGINES_COLD = Phase("engines_cold", "engines alone, cold: start()")
ENGINES_WARM = Phase("engines_warm", "engines alone, warm: start()")
DEV_STOP = Phase("dev_stop", "taskgate dev: SIGINT to exit")
PHASES = (DEV_COLD, DEV_WARM, ENGINES_COLD, ENGINES_WARM, DEV_STOP)


class BenchmarkFailure(Exception):
    """A run did not get ready, did not stop cleanly, or left processes behind."""

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class _Process:
    pid: int
    session: int
    command: str


def _say(text: str = "") -> None:
    print(text, flush=True)  # noqa: T201 - the benchmark's report


def _warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)  # noqa: T201 - the benchmark's report


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while children are stopped (a bounded wait), then re-raise."""
    received: list[int] = []

    def remember(signum: int, frame: FrameType | None) -> None:
        del frame
        received.append(signum)

    previous = {
        signum: signal.signal(signum, remember) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    if received:
        raise KeyboardInterrupt


def _interrupt(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def _processes(*, sessions: set[int], marker: bytes | None) -> list[_Process]:
    """Live processes (zombies excluded) in one of `sessions` or with `marker` in their environment."""
    found = []
    own = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        try:
            head, _, tail = (entry / "stat").read_text().rpartition(")")
            fields = tail.split()
            if len(fields) < 4 or fields[0] in ("Z", "X"):
                continue
            session = int(fields[3])
            marked = marker is not None and marker in (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue  # exited while we looked
        if session in sessions or marked:
            found.append(_Process(int(entry.name), session, head.partition("(")[2]))
    return found


def _stop_leftovers(*, sessions: set[int], marker: bytes | None = None) -> list[str]:
    """Give stragglers a moment, then SIGKILL them (they are ours) and describe each one."""
    sessions = sessions - {os.getsid(0)}  # never our own session
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    leftovers = _processes(sessions=sessions, marker=marker)
    while leftovers and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
        leftovers = _processes(sessions=sessions, marker=marker)
    for leftover in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(leftover.pid, signal.SIGKILL)
    return [
        f"left running: pid {leftover.pid} ({leftover.command}, session {leftover.session})"
        for leftover in leftovers
    ]


def _free_api_port() -> int:
    for _ in range(200):
        port = _API_PORTS[secrets.randbelow(len(_API_PORTS))]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise BenchmarkFailure(f"no free TCP port in {_API_PORTS.start}-{_API_PORTS.stop - 1}")


def _answers_200(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    try:
        connection.request("GET", "/health/ready")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _wait_ready(child: subprocess.Popen[bytes], port: int, started: float) -> float:
    deadline = started + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise BenchmarkFailure(
                f"taskgate dev exited with code {child.returncode} before /health/ready was 200"
            )
        if _answers_200(port):
            return time.monotonic() - started
        time.sleep(POLL_INTERVAL_S)
    raise BenchmarkFailure(f"/health/ready did not answer 200 within {READY_TIMEOUT_S:.0f} s")


def _stop_dev(child: subprocess.Popen[bytes], marker: bytes) -> tuple[float, list[str]]:
    """Ctrl-C `taskgate dev`, wait for it, and sweep up whatever it left; return (seconds, problems)."""
    problems: list[str] = []
    started = time.monotonic()
    interrupted = child.poll() is None
    if interrupted:
        child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        problems.append(f"taskgate dev did not exit within {STOP_TIMEOUT_S:.0f} s of SIGINT")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=KILL_WAIT_S)
    seconds = time.monotonic() - started
    if interrupted and child.returncode not in (0, None) and not problems:
        problems.append(f"taskgate dev exited with code {child.returncode} on SIGINT")
    problems += _stop_leftovers(sessions={child.pid}, marker=marker)
    return seconds, problems


def measure_dev(data_dir: Path, log_path: Path) -> tuple[float, float]:
    """Run `taskgate dev` until /health/ready is 200, then Ctrl-C it; return (ready_s, stop_s)."""
    port = _free_api_port()
    token = secrets.token_hex(8)
    # The default configuration, as on a fresh checkout: no engine given by URL, no overrides.
    env = {key: value for key, value in os.environ.items() if not key.startswith("TASKGATE_")}
    env[_MARKER] = token
    marker = f"{_MARKER}={token}".encode()
    argv = [
        sys.executable,
        "-m",
        "app.cli",
        "dev",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
    ]
    with log_path.open("wb") as log_file:
        started = time.monotonic()
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and CLI, no shell
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our Ctrl-C must not reach it: we send SIGINT ourselves
        )
    try:
        ready_s = _wait_ready(child, port, started)
    except BaseException as exc:
        with _signals_deferred():
            _, problems = _stop_dev(child, marker)
        for problem in problems:
            _warn(f"while stopping taskgate dev early: {problem}")
        if isinstance(exc, BenchmarkFailure):
            raise BenchmarkFailure(str(exc), details=log_tail(log_path, lines=40)) from None
        raise
    with _signals_deferred():
        stop_s, problems = _stop_dev(child, marker)
    if problems:
        raise BenchmarkFailure("; ".join(problems), details=log_tail(log_path, lines=40))
    return ready_s, stop_s


def measure_engines(data_dir: Path) -> float:
    """Time `DevStack(data_dir).start()` (PostgreSQL, Valkey, S3), then stop them and check."""
    stack = DevStack(data_dir, durable=True, environ={})  # start all three, whatever our env says
    started = time.monotonic()
    try:
        stack.start()
        seconds = time.monotonic() - started
    finally:
        with _signals_deferred():
            sessions = set(stack.pids.values())  # each engine leads its own session
            stack.stop()
            problems = _stop_leftovers(sessions=sessions)
    if problems:
        raise BenchmarkFailure("; ".join(problems))
    return seconds


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.partition(":")[2].strip()
                break
    memory_gib = 0.0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024**2, 1)
                break
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gib": memory_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews the figures."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def summarize(samples: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    """Median, min and max per phase, with the raw samples (seconds)."""
    summary: dict[str, dict[str, Any]] = {}
    for phase in PHASES:
        values = samples[phase.key]
        if not values:
            continue
        summary[phase.key] = {
            "label": phase.label,
            "samples": [round(value, 3) for value in values],
            "median": round(statistics.median(values), 3),
            "min": round(min(values), 3),
            "max": round(max(values), 3),
        }
    return summary


def table(summary: dict[str, dict[str, Any]]) -> str:
    """The summary as a Markdown table, ready for docs/benchmarks.md."""
    lines = ["| phase | runs | median | min | max |", "|---|---:|---:|---:|---:|"]
    for row in summary.values():
        lines.append(
            f"| {row['label']} | {len(row['samples'])} | {row['median']:.2f} s"
            f" | {row['min']:.2f} s | {row['max']:.2f} s |"
        )
    notes: list[str] = []
    for dev, engines, what in ((DEV_COLD, ENGINES_COLD, "cold"), (DEV_WARM, ENGINES_WARM, "warm")):
        if dev.key in summary and engines.key in summary:
            extra = summary[dev.key]["median"] - summary[engines.key]["median"]
            notes.append(
                f"{what}: taskgate dev takes {extra:+.2f} s over the engines alone (medians):"
                " imports, migrations, API start (worker and scheduler start meanwhile)."
            )
    return "\n".join([*lines, "", *notes] if notes else lines)


def _run(runs: int, scratch: Path, samples: dict[str, list[float]]) -> None:
    for run in range(1, runs + 1):
        run_dir = scratch / f"run{run}"
        run_dir.mkdir()
        prefix = f"run {run}/{runs}"
        for phase in (ENGINES_COLD, ENGINES_WARM):  # the second start finds the first one's data
            seconds = measure_engines(run_dir / "engines")
            samples[phase.key].append(seconds)
            _say(f"{prefix}  {phase.label:<36} {seconds:6.2f} s")
        for phase in (DEV_COLD, DEV_WARM):
            ready_s, stop_s = measure_dev(run_dir / "dev", run_dir / f"{phase.key}.log")
            samples[phase.key].append(ready_s)
            samples[DEV_STOP.key].append(stop_s)
            _say(f"{prefix}  {phase.label:<36} {ready_s:6.2f} s   (stopped in {stop_s:.2f} s)")
        shutil.rmtree(run_dir, ignore_errors=True)  # a few hundred MB per run otherwise


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.dev_startup",
        description="Time `taskgate dev` to /health/ready = 200, cold and warm.",
    )
    count = parser.add_mutually_exclusive_group()
    count.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="runs per phase (default 5)")
    count.add_argument("--short", action="store_true", help="one run per phase, for CI")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    runs = 1 if args.short else int(args.runs)
    host = machine()
    load_before = load_average()
    _say(
        f"dev startup benchmark: {runs} run(s); {host['cpus']} CPUs ({host['cpu_model']}),"
        f" {host['memory_gib']} GiB, Python {host['python']}; load {load_before}"
    )
    signal.signal(signal.SIGTERM, _interrupt)
    samples: dict[str, list[float]] = {phase.key: [] for phase in PHASES}
    failure: BenchmarkFailure | None = None
    interrupted = False
    scratch = Path(tempfile.mkdtemp(prefix="taskgate-bench-"))
    try:
        _run(runs, scratch, samples)
    except BenchmarkFailure as exc:
        failure = exc
    except KeyboardInterrupt:
        interrupted = True
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    load_after = load_average()
    summary = summarize(samples)
    if summary:
        _say()
        _say(table(summary))
        _say(f"\nload average before: {load_before}, after: {load_after}")
    if args.json is not None:
        _write_json(
            args.json,
            {
                "benchmark": "dev_startup",
                "runs": runs,
                "machine": host,
                "load_average": {"before": load_before, "after": load_after},
                "phases": summary,
                "ok": failure is None and not interrupted,
                "failure": None if failure is None else str(failure),
            },
        )
    if interrupted:
        _warn("interrupted: every child was stopped")
        return 130
    if failure is not None:
        _warn(f"\nFAILED: {failure}")
        if failure.details:
            _warn(f"--- last lines of the taskgate dev output ---\n{failure.details}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
