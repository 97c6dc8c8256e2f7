"""Input types for what PostgreSQL can store: text without NUL, JSON without NaN or deep nesting."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator

MAX_JSON_DEPTH = 32


def without_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def check_storable_json(value: Any, *, max_depth: int = MAX_JSON_DEPTH, depth: int = 0) -> None:
    """Refuse what jsonb cannot hold (NUL characters, NaN, Infinity) and absurd nesting."""
    if depth > max_depth:
        raise ValueError(f"must be nested at most {max_depth} levels deep")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must not contain NaN or Infinity")
    if isinstance(value, dict):
        for key, item in value.items():
            check_storable_json(key, max_depth=max_depth, depth=depth + 1)
            check_storable_json(item, max_depth=max_depth, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_storable_json(item, max_depth=max_depth, depth=depth + 1)


def _storable_object(value: dict[str, Any]) -> dict[str, Any]:
    check_storable_json(value)
    return value


# Text that PostgreSQL can store: its text types refuse NUL characters.
PlainText = Annotated[str, AfterValidator(without_nul)]
# A JSON object that PostgreSQL's jsonb can store.
JsonObject = Annotated[dict[str, Any], AfterValidator(_storable_object)]
