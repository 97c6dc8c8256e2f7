"""What the deployment files are checked against: the real settings, the real command line and
the schemas the offline validators ship."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from typer.main import get_command

from app.cli import cli
from app.core.config import Settings

VENV_BIN = Path(sys.executable).parent
PREFIX = "TASKGATE_"


def is_setting(name: str) -> bool:
    """Whether `TASKGATE_<FIELD>` or `TASKGATE_<SECTION>__<FIELD>` names a field of `Settings`."""
    if not name.startswith(PREFIX):
        return False
    model: type[BaseModel] = Settings
    *sections, field = name.removeprefix(PREFIX).lower().split("__")
    for section in sections:
        info = model.model_fields.get(section)
        annotation = info.annotation if info is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return False
        model = annotation
    info = model.model_fields.get(field)
    return info is not None and not (
        isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
    )


def check_command(argv: Sequence[str]) -> None:
    """Parse `taskgate <argv>` as the CLI would, without running it: fails the test, naming the
    error, for an unknown command, option or value."""
    group = get_command(cli)
    name, *rest = argv
    parent = group.make_context("taskgate", [name])
    command = group.get_command(parent, name)  # type: ignore[attr-defined]
    assert command is not None, f"no such command: taskgate {name}"
    try:
        command.make_context(name, list(rest), parent=parent)
    except Exception as exc:  # typer's own click: a usage error of its vendored copy
        raise AssertionError(f"taskgate {' '.join(argv)}: {exc}") from None


def check_jsonschema(schema: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema against one of the schemas it vendors (no network)."""
    return subprocess.run(  # noqa: S603 - the venv's check-jsonschema
        [str(VENV_BIN / "check-jsonschema"), "--builtin-schema", schema, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all_yaml(path: Path) -> list[Any]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]
