"""Task results too large for their row, kept in S3: stored, linked, deleted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from app.files.exceptions import StorageUnavailable
from app.files.storage import Storage, StorageError, object_key


async def result_links(storage: Storage, keys: Sequence[str | None]) -> list[str | None]:
    """Presigned GETs of task results kept in S3 (None where a result is inline or absent)."""
    if not any(keys):
        return [None] * len(keys)

    def sign() -> list[str | None]:
        return [storage.download_url(key).url if key else None for key in keys]

    try:
        return await asyncio.to_thread(sign)
    except StorageError as exc:
        raise StorageUnavailable(str(exc)) from None


async def store_result(
    storage: Storage, *, project_id: uuid.UUID, task_id: uuid.UUID, payload: bytes
) -> str:
    """Keep a large task result in S3 and return its key: one key per task, so a repeated
    attempt overwrites rather than leaks. Raises `StorageError` when S3 fails."""
    key = object_key(project_id, "results", f"{task_id}.json")
    await asyncio.to_thread(storage.put, key, payload, content_type="application/json")
    return key


async def delete_results(storage: Storage, keys: Sequence[str]) -> None:
    """Delete task results kept in S3 (deleting one already gone is harmless)."""
    if keys:
        await asyncio.to_thread(storage.delete_many, list(keys))
