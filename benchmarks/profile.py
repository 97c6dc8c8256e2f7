"""Where the time goes: py-spy on the harness's stack under one hot path's load.

    .venv/bin/python -m benchmarks.profile submit|drain [--idle] [--seconds 15] [--top 40] [--out DIR]

`submit`: wrk at 64 connections against durable submit (workers stopped), py-spy on every API
process. `drain`: a preloaded backlog of `echo` tasks, py-spy on every worker process while it
drains. Prints the functions with the most samples, own and inclusive: GIL-holding samples
(where the CPU goes) or, with `--idle`, every sample (where the wall-clock time of a path that
waits goes). Keeps the collapsed stacks (`<out>/<pid>.txt`, for flame graph tools). Profile
before optimising; the figures to quote are `make bench`'s (py-spy slows what it samples).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import load
from benchmarks.harness.procs import BenchError, Processes, say
from benchmarks.harness.scenarios.common import ECHO
from benchmarks.harness.stack import Project, Taskgate

PRELOAD_S = 10


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).is_file():
        raise BenchError("py-spy is missing: .venv/bin/pip install py-spy")
    return found


def _record(
    pids: Sequence[int], seconds: float, out: Path, *, idle: bool
) -> list[threading.Thread]:
    # GIL-holding samples show where the CPU goes; `idle` (every sample, waiting included) shows
    # where the wall-clock time of a latency-bound path goes (a worker waiting on its commits).
    mode = ["--idle"] if idle else ["--gil"]

    def one(pid: int) -> None:
        subprocess.run(  # noqa: S603 - fixed argv
            [
                _py_spy(),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(int(seconds)),
                "--format",
                "raw",
                *mode,
                "--nonblocking",
                "--rate",
                "200",
                "--output",
                str(out / f"{pid}.txt"),
            ],
            capture_output=True,
            timeout=seconds + 60,
            check=False,
        )

    threads = [threading.Thread(target=one, args=(pid,)) for pid in pids]
    for thread in threads:
        thread.start()
    return threads


def _report(out: Path, top: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for path in out.glob("*.txt"):
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [frame.split(" (")[0] + " " + _where(frame) for frame in stack.split(";")]
            total += count
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
    if not total:
        raise BenchError(f"py-spy recorded nothing in {out}")
    for title, counter in (("own", own), ("inclusive", inclusive)):
        sys.stdout.write(f"\n{title} time, {total} samples\n")
        for frame, count in counter.most_common(top):
            sys.stdout.write(f"{100 * count / total:6.1f}%  {frame}\n")


def _where(frame: str) -> str:
    inside = frame.partition(" (")[2].rstrip(")")
    for marker in ("site-packages/", "/app/", "/benchmarks/"):
        if marker in inside:
            return inside.split(marker, 1)[1].split(":")[0]
    return inside.split(":")[0]


def _echoes(tg: Taskgate, scratch: Path, project: Project, seconds: float) -> load.WrkResult:
    """Submit `echo` tasks at 64 connections for `seconds`."""
    return load.wrk(
        scratch,
        url=tg.base_url + project.tasks_path,
        body=json.dumps(ECHO),
        auth=project.auth,
        connections=64,
        duration_s=seconds,
    )


def _submit(tg: Taskgate, scratch: Path, seconds: float, out: Path, *, idle: bool) -> None:
    project = tg.new_project("profile-submit")
    tg.stop_workers()
    _echoes(tg, scratch, project, 2)  # warm-up
    threads = _record(tg.api_pids(), seconds, out, idle=idle)
    time.sleep(0.5)
    result = _echoes(tg, scratch, project, seconds - 1)
    for thread in threads:
        thread.join()
    say(f"submit under py-spy: {result.rate:.0f} req/s, p99 {result.p99_ms:.0f} ms")


def _drain(tg: Taskgate, scratch: Path, seconds: float, out: Path, *, idle: bool) -> None:
    project = tg.new_project("profile-drain")
    tg.stop_workers()
    preload = _echoes(tg, scratch, project, PRELOAD_S)
    tg.start_workers(tg.worker_concurrency)
    time.sleep(3)  # the pool processes are up and draining
    before = tg.unfinished(project)
    threads = _record(tg.worker_pids(), seconds, out, idle=idle)
    for thread in threads:
        thread.join()
    done = before - tg.unfinished(project)
    say(f"drain under py-spy: {done} of {preload.requests} tasks in {seconds:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("path", choices=("submit", "drain"))
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--idle", action="store_true", help="wall-clock time, waiting included")
    parser.add_argument("--worker-pool", choices=("threads", "prefork", "solo"), default="threads")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="taskgate-profile-"))
    out = args.out or scratch / "stacks"
    out.mkdir(parents=True, exist_ok=True)
    procs = Processes(scratch / "logs")
    tg = Taskgate(procs, scratch, worker_pool=args.worker_pool)
    try:
        tg.start()
        if args.path == "submit":
            _submit(tg, scratch, args.seconds, out, idle=args.idle)
        else:
            _drain(tg, scratch, args.seconds, out, idle=args.idle)
    finally:
        tg.stop()
        procs.stop_all()
    _report(out, args.top)
    say(f"collapsed stacks in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
