"""Supervisor with real child processes: restarts, process groups, stop."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.devstack.process import is_alive
from app.devstack.supervisor import ChildSpec, Supervisor
from tests.support import wait_until

log = logging.getLogger("tests.supervisor")

SLEEPER = "import time; time.sleep(300)"
# Starts a grandchild in its own process group that ignores SIGTERM, records its pid, then waits.
FAMILY = """
import pathlib, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
pathlib.Path(sys.argv[1]).write_text(str(grandchild.pid))
time.sleep(300)
"""


def python_child(name: str, code: str, *args: str) -> ChildSpec:
    return ChildSpec(name, [sys.executable, "-c", code, *args], dict(os.environ))


@pytest.fixture
def supervisors() -> Iterator[list[Supervisor]]:
    """Supervisors a test creates; stopped afterwards even when the test fails."""
    created: list[Supervisor] = []
    yield created
    for supervisor in created:
        supervisor.stop(timeout_s=1.0)


class TestSupervisor:
    def test_restarts_a_child_that_exits_and_leaves_the_others_alone(
        self, supervisors: list[Supervisor], caplog: pytest.LogCaptureFixture
    ) -> None:
        # The crasher lives a moment, so `first` below still sees it running on a busy machine.
        crasher = "import time; time.sleep(0.5); raise SystemExit(3)"
        supervisor = Supervisor(
            [python_child("crasher", crasher), python_child("steady", SLEEPER)],
            log=log,
            restart_backoff_s=0.05,
        )
        supervisors.append(supervisor)
        supervisor.start()
        first = supervisor.pids
        caplog.set_level(logging.WARNING, logger=log.name)

        def crasher_restarted() -> bool:
            supervisor.poll()
            pid = supervisor.pids.get("crasher")
            return pid is not None and pid != first["crasher"]

        wait_until(crasher_restarted, timeout_s=10, interval_s=0.02, what="a restart")

        assert supervisor.pids["steady"] == first["steady"]
        exits = [r for r in caplog.records if r.getMessage() == "child exited, restarting"]
        assert exits
        assert exits[0].__dict__["child"] == "crasher"
        assert exits[0].__dict__["pid"] == first["crasher"]
        assert exits[0].__dict__["returncode"] == 3

    def test_backs_off_between_restarts(self, supervisors: list[Supervisor]) -> None:
        supervisor = Supervisor(
            [python_child("crasher", "raise SystemExit(1)")], log=log, restart_backoff_s=30.0
        )
        supervisors.append(supervisor)
        supervisor.start()
        first = supervisor.pids["crasher"]
        wait_until(
            lambda: not is_alive(first), timeout_s=10, interval_s=0.02, what="the child to exit"
        )

        supervisor.poll()
        supervisor.poll()

        assert supervisor.pids == {}

    def test_stop_kills_each_child_and_its_process_group(
        self, supervisors: list[Supervisor], tmp_path: Path
    ) -> None:
        pid_file = tmp_path / "grandchild.pid"
        supervisor = Supervisor(
            [python_child("family", FAMILY, str(pid_file)), python_child("steady", SLEEPER)],
            log=log,
        )
        supervisors.append(supervisor)
        supervisor.start()
        children = supervisor.pids
        wait_until(pid_file.exists, timeout_s=10, interval_s=0.02, what="the grandchild")
        grandchild = int(pid_file.read_text())

        supervisor.stop(timeout_s=0.5)

        assert not any(is_alive(pid) for pid in children.values())
        assert not is_alive(grandchild)
        assert supervisor.pids == {}
