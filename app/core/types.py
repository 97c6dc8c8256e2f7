"""Input types for what PostgreSQL can store: text without NUL, JSON without NaN or deep nesting."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Strict

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


def integral(value: object) -> object:
    """`3.0` is the integer 3 in JSON, as a document's `"type": "integer"` says; anything else
    is left for strict validation to refuse (`3.5`, `"3"`, `true`)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def rfc3339(value: object) -> object:
    """Refuse the Unix timestamps lax validation takes for times (`0`, `"0.5"`): the document
    says `date-time`, so only RFC 3339 text is one."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        is_number = True
    if is_number:
        raise ValueError("must be an RFC 3339 time such as 2026-01-31T14:20:00Z, not a number")
    return value


def _storable_object(value: dict[str, Any]) -> dict[str, Any]:
    check_storable_json(value)
    return value


# Text that PostgreSQL can store: its text types refuse NUL characters.
PlainText = Annotated[str, AfterValidator(without_nul)]
# A JSON object that PostgreSQL's jsonb can store.
JsonObject = Annotated[dict[str, Any], AfterValidator(_storable_object)]
# An integer as JSON writes one, `3` or `3.0`: never `"3"`, `3.5` or `true` (which lax
# validation would take for 1).
JsonInt = Annotated[int, BeforeValidator(integral), Strict()]
# A time with its offset, written as RFC 3339 text.
Rfc3339Time = Annotated[AwareDatetime, BeforeValidator(rfc3339)]
