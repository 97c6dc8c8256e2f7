"""Resident memory of processes, from /proc (Linux): a sampler for a worker's pool processes."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path


def children(pid: int) -> list[int]:
    """Direct children of `pid` (a Celery worker's prefork pool processes)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def rss_bytes(pid: int) -> int:
    """VmRSS of `pid` in bytes (0 once it has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    """Samples the summed VmRSS of `pids` every `interval_s` in a thread; `peak` is the highest."""

    def __init__(self, pids: Iterable[int], *, interval_s: float = 0.01) -> None:
        self.pids = list(pids)
        self.interval_s = interval_s
        self.baseline = self.current()
        self.peak = self.baseline
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def current(self) -> int:
        return sum(rss_bytes(pid) for pid in self.pids)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            self.samples += 1
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())

    @property
    def growth(self) -> int:
        return self.peak - self.baseline
