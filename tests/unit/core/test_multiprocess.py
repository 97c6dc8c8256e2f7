"""The host's metrics directory: what a fresh API start removes, what it keeps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.core.multiprocess import LIVE_GAUGE_PREFIXES, remove_dead, wipe


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


class TestRemoveDead:
    def test_removes_the_files_of_processes_gone_and_keeps_those_of_live_ones(
        self, tmp_path: Path
    ) -> None:
        dead, live = _dead_pid(), os.getpid()
        for pid in (dead, live):
            for kind in ("counter", "histogram", "gauge_livesum"):
                (tmp_path / f"{kind}_{pid}.db").write_bytes(b"")

        removed = remove_dead(tmp_path)

        assert removed == [dead]
        assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
            f"{kind}_{live}.db" for kind in ("counter", "histogram", "gauge_livesum")
        )

    def test_with_prefixes_removes_only_a_dead_process_s_live_gauges(self, tmp_path: Path) -> None:
        dead = _dead_pid()
        (tmp_path / f"counter_{dead}.db").write_bytes(b"")
        (tmp_path / f"gauge_livesum_{dead}.db").write_bytes(b"")

        remove_dead(tmp_path, prefixes=LIVE_GAUGE_PREFIXES)

        assert [path.name for path in tmp_path.iterdir()] == [f"counter_{dead}.db"]


class TestWipe:
    def test_removes_every_process_s_files_and_nothing_else(self, tmp_path: Path) -> None:
        (tmp_path / f"counter_{os.getpid()}.db").write_bytes(b"")
        (tmp_path / "notes.txt").write_text("kept")

        wipe(tmp_path)

        assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


class TestEntryPoints:
    def test_the_cli_loads_no_prometheus_client_before_it_sets_the_directory(self) -> None:
        # prometheus_client picks its mode on import: `taskgate api|worker|scheduler` set the
        # directory first, which only works while importing the CLI does not load it.
        loaded = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, app.cli; print('prometheus_client' in sys.modules)",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )

        assert loaded.stdout.strip() == "False"
