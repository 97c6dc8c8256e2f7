"""The schema's Alembic migrations, shipped inside the package: `taskgate migrate` runs them from
any install. In a source checkout the repo's `alembic.ini` adds what writing a revision needs
(the file names, the formatting hooks) and the `alembic` command works from the repo root."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent
# pg_advisory_xact_lock's key for migration runs (env.py): "taskgate" in ASCII.
MIGRATION_LOCK_KEY = 0x7461736B67617465
# Present in a source checkout only (an installed package has no repo around it).
ALEMBIC_INI = MIGRATIONS_DIR.parent.parent / "alembic.ini"


def alembic_config(database_url: str | None = None) -> Config:
    """The project's Alembic config; `database_url` overrides the settings' URL (tests use it)."""
    config = Config(str(ALEMBIC_INI)) if ALEMBIC_INI.is_file() else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config
