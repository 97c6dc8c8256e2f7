"""The API client is HTTP only: it imports nothing of the server, and the CLI starts without it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import app.client

SERVER_MODULES = ("sqlalchemy", "fastapi", "asyncpg", "celery", "redis", "app.core.config")


def _app_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "app" or name.startswith("app.")}


def test_the_client_imports_nothing_of_app_but_itself_and_the_version() -> None:
    package = Path(app.client.__file__).parent

    outside = {
        f"{path.name}: {name}"
        for path in package.glob("*.py")
        for name in _app_imports(path)
        if name != "app" and not name.startswith("app.client")
    }

    assert outside == set()


def test_starting_the_cli_loads_no_server_module() -> None:
    script = f"import sys, app.cli; print([m for m in {SERVER_MODULES!r} if m in sys.modules])"

    loaded = subprocess.run(  # noqa: S603 (fixed argv)
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )

    assert loaded.stdout.strip() == "[]"
