"""Where the CLI connects: a flag, else its environment variable (typer reads both), else the
profile's value in `$XDG_CONFIG_HOME/taskgate/config.toml` (`~/.config/…`), else a default."""

from __future__ import annotations

import os
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.client.errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_PROFILE = "default"
PROFILE_KEYS = ("url", "api_key", "project")


@dataclass(frozen=True)
class Connection:
    url: str
    api_key: str | None
    project: str | None
    profile: str

    def require_api_key(self) -> str:
        if not self.api_key:
            raise ConfigError(
                f"no API key: give --api-key, set TASKGATE_API_KEY, or api_key in "
                f"[profiles.{self.profile}] of {config_path()}"
            )
        return self.api_key

    def require_project(self) -> uuid.UUID:
        if not self.project:
            raise ConfigError(
                f"no project: give --project, set TASKGATE_PROJECT, or project in "
                f"[profiles.{self.profile}] of {config_path()}"
            )
        try:
            return uuid.UUID(self.project)
        except ValueError:
            raise ConfigError(f"project {self.project!r} is not a UUID") from None


def config_path() -> Path:
    # The client's own file, not the server's settings (those come from `core.config`).
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "taskgate" / "config.toml"


def load_profile(name: str, *, required: bool, path: Path | None = None) -> dict[str, str]:
    """The profile's keys; {} when the file or profile is absent and was not asked for."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"profile {name!r} asked for, but {path} does not exist") from None
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    profiles = document.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}: `profiles` must be a table of [profiles.<name>]")
    profile = profiles.get(name)
    if profile is None:
        if required:
            raise ConfigError(f"{path} has no [profiles.{name}]")
        return {}
    if not isinstance(profile, dict):
        raise ConfigError(f"{path}: profiles.{name} must be a table")
    found: dict[str, str] = {}
    for key, value in profile.items():
        if key not in PROFILE_KEYS:
            raise ConfigError(
                f"{path}: profiles.{name}.{key} is not a setting ({', '.join(PROFILE_KEYS)})"
            )
        if not isinstance(value, str):
            raise ConfigError(f"{path}: profiles.{name}.{key} must be a string")
        found[key] = value
    return found


def resolve(
    *, url: str | None, api_key: str | None, project: str | None, profile: str | None
) -> Connection:
    """The connection the flags (or their variables) and the profile describe. A profile named
    by --profile or TASKGATE_PROFILE must exist; the `default` one may be absent."""
    name = profile or DEFAULT_PROFILE
    stored = load_profile(name, required=profile is not None)
    base = (url or stored.get("url") or DEFAULT_URL).rstrip("/")
    try:
        scheme = httpx.URL(base).scheme
    except httpx.InvalidURL as exc:
        raise ConfigError(f"URL {base!r}: {exc}") from None
    if scheme not in ("http", "https"):
        raise ConfigError(f"URL {base!r} must start with http:// or https://")
    return Connection(
        url=base,
        api_key=api_key or stored.get("api_key"),
        project=project or stored.get("project"),
        profile=name,
    )
