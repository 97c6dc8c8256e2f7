"""Cursor pagination: `Page[T]` bodies, `?limit=`/`?cursor=` parameters, opaque keyset cursors.

A repository fetches `limit + 1` rows after the decoded cursor, in a stable order with a unique
tie-breaker (`created_at, id`); `page_of` keeps `limit` of them and encodes where the next page
starts. Cursors are base64url JSON: opaque to clients, but not secret (every query still filters
by what the caller may see). A cursor that does not decode is a 400 problem, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from app.core.errors import AppError

MAX_LIMIT = 200
MAX_CURSOR_LENGTH = 512

T = TypeVar("T")
RowT = TypeVar("RowT")
CursorT = TypeVar("CursorT", bound=BaseModel)

LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page (1-200).")]
CursorQuery = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR_LENGTH,
        description="`next_cursor` of the previous page; omit for the first page.",
    ),
]


class InvalidCursor(AppError):
    status, type, title = 400, "invalid-cursor", "Invalid cursor"


class Page(BaseModel, Generic[T]):
    """One page of a list; pass `next_cursor` back as `?cursor=` for the next (null: no more)."""

    items: list[T]
    next_cursor: str | None


class KeysetCursor(BaseModel):
    """Where a page ordered by `(timestamp, id)` stops: the last item's values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: AwareDatetime
    id: uuid.UUID


def encode_cursor(position: BaseModel) -> str:
    return base64.urlsafe_b64encode(position.model_dump_json().encode()).decode().rstrip("=")


def decode_cursor(cursor: str, model: type[CursorT]) -> CursorT:
    """The position in `cursor`, or `InvalidCursor` (400) for anything that is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return model.model_validate_json(raw)
    except (binascii.Error, ValueError, ValidationError):
        raise InvalidCursor(
            "The cursor is malformed; use `next_cursor` as it was returned."
        ) from None


def decode_keyset(cursor: str | None) -> KeysetCursor | None:
    return None if cursor is None else decode_cursor(cursor, KeysetCursor)


def page_of(
    rows: Sequence[RowT], *, limit: int, position: Callable[[RowT], BaseModel]
) -> tuple[list[RowT], str | None]:
    """Keep `limit` of `limit + 1` fetched rows; the cursor after the last kept one if more exist."""
    if len(rows) <= limit:
        return list(rows), None
    kept = list(rows[:limit])
    return kept, encode_cursor(position(kept[-1]))


def keyset(at: datetime, id: uuid.UUID) -> KeysetCursor:
    return KeysetCursor(at=at, id=id)
