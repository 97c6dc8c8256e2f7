"""Load from its own process: wrk (closed loop, 64 connections) or the Python generator."""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness.procs import BenchError, Processes, say

WRK_THREADS = 2
_counter = itertools.count(1)

# wrk's Lua: a fixed POST, and a JSON summary printed by `done` (latencies in microseconds).
_LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = {auth}

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"""


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ensure_wrk() -> str:
    """The wrk binary; installed with apt-get (as root) when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError("wrk is not installed: `apt-get install -y wrk` (as root)")
    say("installing wrk (apt-get install -y wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    installed = _apt(["install", "-y", "-q", "wrk"], env)
    if installed.returncode != 0:  # the package lists may be missing or stale
        _apt(["update", "-q"], env)
        installed = _apt(["install", "-y", "-q", "wrk"], env)
    found = shutil.which("wrk")
    if installed.returncode != 0 or not found:
        raise BenchError(f"could not install wrk:\n{installed.stdout[-2000:]}")
    return found


def _apt(args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed argv
        ["apt-get", *args],  # noqa: S607 - apt-get from PATH, as root
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@dataclass(frozen=True)
class WrkResult:
    requests: int
    non_2xx: int
    socket_errors: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        """Successful (2xx) responses per second."""
        return (self.requests - self.non_2xx) / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "non_2xx": self.non_2xx,
            "socket_errors": self.socket_errors,
            "seconds": round(self.seconds, 3),
            "rate": round(self.rate, 1),
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
        }


def wrk(
    scratch: Path,
    *,
    url: str,
    body: str,
    auth: str,
    connections: int,
    duration_s: float,
) -> WrkResult:
    """POST `body` to `url` over `connections` keep-alive connections for `duration_s`."""
    binary = ensure_wrk()
    script = scratch / f"wrk-{next(_counter)}.lua"
    script.write_text(_LUA.format(body=_lua_string(body), auth=_lua_string(auth)))
    argv = [binary, f"-t{WRK_THREADS}", f"-c{connections}", f"-d{max(1, round(duration_s))}s"]
    argv += ["--timeout", "10s", "-s", str(script), url]
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv
            argv, capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError("wrk did not finish in time") from None
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(
            f"wrk failed ({done.returncode}): {done.stderr[-1000:]}{done.stdout[-1000:]}"
        )
    raw = json.loads(line.removeprefix("WRK_JSON "))
    return WrkResult(
        requests=raw["requests"],
        non_2xx=raw["status"],
        socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
    )


def loadgen(
    procs: Processes,
    scratch: Path,
    spec: Mapping[str, Any],
    *,
    env: Mapping[str, str],
    timeout_s: float,
) -> dict[str, Any]:
    """Run the Python load generator in its own process on `spec`; return what it wrote."""
    n = next(_counter)
    spec_path, out_path = scratch / f"load-{n}.json", scratch / f"load-{n}.out.json"
    spec_path.write_text(json.dumps(dict(spec)))
    procs.run(
        f"loadgen-{spec['mode']}",
        [sys.executable, "-m", "benchmarks.harness.loadgen", str(spec_path), str(out_path)],
        env,
        timeout_s=timeout_s,
    )
    result: dict[str, Any] = json.loads(out_path.read_text())
    return result
