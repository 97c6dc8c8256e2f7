"""Alembic configuration for `taskgate migrate` and the tests: the repo's `alembic.ini`."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

REPO_ROOT = Path(__file__).resolve().parent.parent
ALEMBIC_INI = REPO_ROOT / "alembic.ini"


def alembic_config(database_url: str | None = None) -> Config:
    """The project's Alembic config; `database_url` overrides the settings' URL (tests use it)."""
    if not ALEMBIC_INI.is_file():
        raise FileNotFoundError(f"{ALEMBIC_INI} not found: run migrations from a source checkout")
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config
