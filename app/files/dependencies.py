"""FastAPI loaders for file routes (and the task routes that presign result links)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app.core.dependencies import SettingsDep
from app.files.storage import Storage


async def get_storage(settings: SettingsDep) -> Storage:
    """The bucket of this deployment (the boto3 client behind it is made once per process)."""
    return Storage.from_settings(settings)


StorageDep = Annotated[Storage, Depends(get_storage)]
