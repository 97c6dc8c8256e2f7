"""One metrics directory per host: prometheus_client's multiprocess mode.

Every process (each uvicorn worker of `taskgate api --workers N`, each Celery worker and pool
process, the scheduler) writes its samples to memory-mapped files named after its pid in
`PROMETHEUS_MULTIPROC_DIR`, and the API's `/metrics` sums them. prometheus_client picks the
mode when it is first imported, so the entry points call `share_metrics_dir` before anything
imports it (this module does not), or at least before taskgate's metrics exist.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from app.core.config import MetricsSettings

ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_DIR_NAME = "taskgate-metrics"
# The files of gauges that count only while their process lives (`multiprocess_mode="live…"`).
LIVE_GAUGE_PREFIXES = ("gauge_livesum_", "gauge_liveall_", "gauge_livemax_", "gauge_livemin_")


def metrics_dir(settings: MetricsSettings) -> Path:
    # Per user: another user's directory (mode 0700) would fail the first sample written.
    return settings.dir or Path(tempfile.gettempdir()) / f"{DEFAULT_DIR_NAME}-{os.getuid()}"


def share_metrics_dir(settings: MetricsSettings, *, fresh: bool = False) -> Path:
    """Point this process and the processes it starts at the host's metrics directory.
    `fresh` (a starting `taskgate api`): remove what processes that no longer run left there,
    so a new start begins from zero while the files of workers that still run are kept."""
    directory = metrics_dir(settings)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if fresh:
        remove_dead(directory)
    switch = "prometheus_client.values" in sys.modules and os.environ.get(ENV) != str(directory)
    os.environ[ENV] = str(directory)
    if switch:
        _switch_loaded_client()
    return directory


def _switch_loaded_client() -> None:
    """prometheus_client was loaded in one-process mode by someone else (Celery's command line
    loads Flower's plugin, which imports it): switch it, as long as none of ours exists yet."""
    if "app.core.metrics" in sys.modules:
        raise RuntimeError(f"{ENV} must be set before taskgate's metrics are created")
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def wipe(directory: Path) -> None:
    """Remove every process's files from `directory` (`taskgate dev`, before it starts any
    process that writes there)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in directory.glob("*.db"):
        path.unlink(missing_ok=True)


def forget_process(pid: int) -> None:
    """Take a stopping process's live gauges (its job slots, running jobs, pool connections)
    out of the host's sums; its counters and histograms stay."""
    directory = os.environ.get(ENV)
    if directory:
        for prefix in LIVE_GAUGE_PREFIXES:
            Path(directory, f"{prefix}{pid}.db").unlink(missing_ok=True)


def remove_dead(directory: Path, *, prefixes: tuple[str, ...] = ()) -> list[int]:
    """Delete the files (of the kinds `prefixes`, or all) of processes that no longer run; return
    their pids. Pids are this host's: a directory shared across hosts or containers mixes them."""
    dead: set[int] = set()
    for path in directory.glob("*.db"):
        if prefixes and not path.name.startswith(prefixes):
            continue
        pid = _pid_of(path)
        if pid is not None and not _alive(pid):
            path.unlink(missing_ok=True)
            dead.add(pid)
    return sorted(dead)


def _pid_of(path: Path) -> int | None:
    _, _, pid = path.stem.rpartition("_")
    return int(pid) if pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
