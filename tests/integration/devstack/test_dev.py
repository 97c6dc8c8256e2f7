"""`taskgate dev` end to end: engines, migrations, API, worker and scheduler, then Ctrl-C."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.devstack.conftest import processes_in
from tests.metrics import total
from tests.support import ProcessGroup, free_port, http_ok, wait_until

# Children and engines stop in a few seconds; an engine waited out to its old 10 s grace (S3 that
# does not act on SIGTERM while it is still starting) took 12 s.
STOP_WITHIN_S = 10.0


def child_pid(role: str, supervisor: int) -> int | None:
    """The PID of the supervisor's own `python -m app.cli <role>` child, if one is running.

    Only direct children count: a worker's prefork processes share its command line.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        state, parent = fields[0], int(fields[1])
        if (
            parent == supervisor
            and state != "Z"
            and argv[1:4] == [b"-m", b"app.cli", role.encode()]
        ):
            return int(entry.name)
    return None


def processes_with_env(key: str, value: str) -> list[int]:
    """PIDs of live processes whose environment holds `key=value`."""
    wanted = f"{key}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z" and wanted in environ:
            found.append(int(entry.name))
    return found


def _worker_slots(port: int) -> float:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    except httpx.HTTPError:
        return 0.0
    return total(response.text, "taskgate_worker_job_slots") if response.is_success else 0.0


@pytest.mark.e2e
class TestDev:
    def test_serves_the_api_restarts_killed_children_and_stops_everything_on_ctrl_c(
        self, tmp_path: Path
    ) -> None:
        data_dir, port, group = tmp_path / "data", free_port(), ProcessGroup()
        env = {key: value for key, value in os.environ.items() if not key.startswith("TASKGATE_")}
        try:
            dev = group.start_python(
                *("-m", "app.cli", "dev", "--data-dir", str(data_dir), "--port", str(port)),
                env=env,
                log_path=tmp_path / "dev.log",
            )
            wait_until(
                lambda: http_ok(f"http://127.0.0.1:{port}/docs") or dev.poll() is not None,
                timeout_s=60,
                what="the API",
            )
            assert dev.poll() is None, (tmp_path / "dev.log").read_text()
            settings = dict(
                line.split("=", 1) for line in (data_dir / "env").read_text().splitlines()
            )
            redis_url = settings["TASKGATE_REDIS__URL"]
            wait_until(
                lambda: http_ok(f"http://127.0.0.1:{port}/health/ready"),
                timeout_s=30,
                what="/health/ready",
            )
            restarted = {}
            for role in ("api", "worker"):

                def running(role: str = role) -> bool:
                    return child_pid(role, dev.pid) is not None

                wait_until(running, timeout_s=30, what=role)
                killed = child_pid(role, dev.pid)
                assert killed is not None
                os.kill(killed, signal.SIGKILL)

                def replaced(role: str = role, killed: int = killed) -> bool:
                    return child_pid(role, dev.pid) not in (None, killed)

                wait_until(replaced, timeout_s=30, what=f"the {role} to be restarted")
                restarted[role] = child_pid(role, dev.pid)
            wait_until(
                lambda: http_ok(f"http://127.0.0.1:{port}/health/ready"),
                timeout_s=30,
                what="the restarted API",
            )
            # The API's scrape holds the workers' figures: they share the platform's directory.
            wait_until(
                lambda: _worker_slots(port) > 0,
                timeout_s=30,
                what="the workers' job slots in the API's /metrics",
            )
            children = processes_with_env("TASKGATE_REDIS__URL", redis_url)

            dev.send_signal(signal.SIGINT)
            returncode = dev.wait(timeout=60)
        finally:
            group.stop_all()

        assert returncode == 0, (tmp_path / "dev.log").read_text()[-3000:]
        assert "taskgate dev is running" in (tmp_path / "dev.log").read_text()
        assert all(restarted.values())
        assert "restarting" in (tmp_path / "dev.log").read_text()
        assert children
        assert processes_with_env("TASKGATE_REDIS__URL", settings["TASKGATE_REDIS__URL"]) == []
        assert processes_in(data_dir) == []
        assert (data_dir / "metrics").is_dir()

    def test_stops_within_seconds_when_its_group_is_terminated_right_after_ready(
        self, tmp_path: Path
    ) -> None:
        data_dir, port, group = tmp_path / "data", free_port(), ProcessGroup()
        env = {key: value for key, value in os.environ.items() if not key.startswith("TASKGATE_")}
        try:
            dev = group.start_python(
                *("-m", "app.cli", "dev", "--data-dir", str(data_dir), "--port", str(port)),
                env=env,
                log_path=tmp_path / "dev.log",
            )
            wait_until(
                lambda: http_ok(f"http://127.0.0.1:{port}/health/ready") or dev.poll() is not None,
                timeout_s=90,
                interval_s=0.02,
                what="/health/ready",
            )
            assert dev.poll() is None, (tmp_path / "dev.log").read_text()
            started_at = time.monotonic()

            os.killpg(dev.pid, signal.SIGTERM)  # as `setsid make dev` gets from a terminal closing
            returncode = dev.wait(timeout=60)
            elapsed = time.monotonic() - started_at
        finally:
            group.stop_all()

        assert returncode == 0, (tmp_path / "dev.log").read_text()[-3000:]
        assert elapsed < STOP_WITHIN_S, (tmp_path / "dev.log").read_text()[-3000:]
        assert processes_in(data_dir) == []
