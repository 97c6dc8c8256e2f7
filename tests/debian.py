"""Debian tools a test needs (promtool, amtool): installed with apt-get when missing, as the
benchmark harness installs wrk. A tool that cannot be installed fails the test, never skips it."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

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


def _apt(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed argv
        ["apt-get", *args],  # noqa: S607 - apt-get from PATH, as root
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
