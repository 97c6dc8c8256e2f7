"""A project's own limits (`projects.settings`) and what they come to with the deployment's defaults.

Services read them with `settings_of(project)` (as stored) and `effective_settings(...)` (every
field a number). Rows written before the settings were typed may hold other keys or values out of
range: reading leaves those out, so they mean the deployment's default (decision 0012).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

from app.core.config import PerMinuteLimit, ProjectDefaults, QueuedTasksLimit, RunningTasksLimit
from app.core.types import integral
from app.projects.models import Project

_QUEUED = "Unfinished tasks (queued, retrying or running) the project may have at once."
_RUNNING = "Tasks of the project that may run at once."
_SUBMITS = "Task submissions per minute, per API key or user."
_READS = "Reads per minute, per API key or user."


def _is_none(value: object) -> bool:
    return value is None


# `3.0` is 3 (the document says `integer`); the model is strict about everything else.
_Integral = BeforeValidator(integral)


class ProjectSettings(BaseModel):
    """A project's own limits. A field left out (or `null`) is the deployment's default."""

    # strict: JSON integers only, so `"3"`, `3.5` or `true` is a 422 rather than a guess.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # Left out when shown or stored rather than `null`: absent is what stands for the default.
    max_queued_tasks: Annotated[QueuedTasksLimit | None, _Integral] = Field(
        None, description=_QUEUED, examples=[1000], exclude_if=_is_none
    )
    max_running_tasks: Annotated[RunningTasksLimit | None, _Integral] = Field(
        None, description=_RUNNING, examples=[10], exclude_if=_is_none
    )
    submit_rate_per_minute: Annotated[PerMinuteLimit | None, _Integral] = Field(
        None, description=_SUBMITS, exclude_if=_is_none
    )
    read_rate_per_minute: Annotated[PerMinuteLimit | None, _Integral] = Field(
        None, description=_READS, exclude_if=_is_none
    )


class EffectiveProjectSettings(BaseModel):
    """The limits that apply to the project: its own settings over the deployment's defaults."""

    max_queued_tasks: int = Field(description=_QUEUED)
    max_running_tasks: int = Field(description=_RUNNING)
    submit_rate_per_minute: int = Field(description=_SUBMITS)
    read_rate_per_minute: int = Field(description=_READS)


def read_settings(stored: Mapping[str, Any]) -> ProjectSettings:
    """`projects.settings` as a model; keys it does not know and values it refuses are left out."""
    try:
        return ProjectSettings.model_validate(stored)
    except ValidationError:
        pass
    kept: dict[str, Any] = {}
    for key, value in stored.items():
        if key not in ProjectSettings.model_fields:
            continue
        try:
            ProjectSettings.model_validate({key: value})
        except ValidationError:
            continue
        kept[key] = value
    return ProjectSettings.model_validate(kept)


def settings_of(project: Project) -> ProjectSettings:
    """The project's own settings, as stored (see `read_settings`)."""
    return read_settings(project.settings)


def effective_settings(
    settings: ProjectSettings, defaults: ProjectDefaults
) -> EffectiveProjectSettings:
    """Every limit as a number: the project's own where it sets one, else the deployment's."""
    return EffectiveProjectSettings.model_validate(
        {**defaults.model_dump(), **settings.model_dump()}
    )


def merge_settings(current: ProjectSettings, change: ProjectSettings) -> ProjectSettings:
    """`change` applied key by key: a field it sends replaces the current value, `null` removes
    it, a field it leaves out stays as it is."""
    values = current.model_dump()
    for key in change.model_fields_set:
        values[key] = getattr(change, key)
    return ProjectSettings.model_validate(values)
