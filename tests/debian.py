"""Debian tools a test needs (promtool, amtool): installed with apt-get when missing, as the
benchmark harness installs wrk. A tool that cannot be installed fails the test, never skips it."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest


@functools.cache
def debian_tool(binary: str, package: str) -> str:
    """The path of `binary`, from the Debian `package` installed now if it is missing."""
    found = shutil.which(binary)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail(f"{binary} is not installed and this is not root: apt-get install -y {package}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _one_installer():
        found = shutil.which(binary)  # another test process may have installed it meanwhile
        if found:
            return found
        installed = _apt(["install", "-y", "-q", "--no-install-recommends", package], env)
        if installed.returncode != 0:  # the package lists may be missing or stale
            _apt(["update", "-q"], env)
            installed = _apt(["install", "-y", "-q", "--no-install-recommends", package], env)
    found = shutil.which(binary)
    if installed.returncode != 0 or not found:
        pytest.fail(
            f"could not install {binary} (apt-get install -y {package}):\n"
            f"{installed.stdout[-2000:]}{installed.stderr[-2000:]}"
        )
    return found


def promtool() -> str:
    return debian_tool("promtool", "prometheus")


def amtool() -> str:
    return debian_tool("amtool", "prometheus-alertmanager")


@contextlib.contextmanager
def _one_installer() -> Iterator[None]:
    """One apt-get at a time across the suite's processes (they run in parallel): apt's own lock
    makes a second one fail rather than wait."""
    with open("/tmp/taskgate-tests-apt.lock", "w") as lock:  # noqa: S108 (root's, one host)
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _apt(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed argv
        ["apt-get", *args],  # noqa: S607 - apt-get from PATH, as root
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
