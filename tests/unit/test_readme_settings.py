"""Every setting is in the README's configuration table, by its environment variable."""

from __future__ import annotations

from pydantic import BaseModel

from app.core.config import Settings
from tests.support import REPO_ROOT


def _variables(model: type[BaseModel], prefix: str) -> list[tuple[str, str]]:
    """(the variable, its last part) of every leaf setting of `model`."""
    found = []
    for name, field in model.model_fields.items():
        variable = f"{prefix}{name.upper()}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.extend(_variables(annotation, f"{variable}__"))
        else:
            found.append((variable, name.upper()))
    return found


def test_every_setting_is_documented() -> None:
    readme = (REPO_ROOT / "README.md").read_text()

    # A row may name a pair as `TASKGATE_X__A`, `…__B`.
    missing = [
        variable
        for variable, last in _variables(Settings, "TASKGATE_")
        if f"`{variable}`" not in readme and f"`…__{last}`" not in readme
    ]

    assert missing == []
