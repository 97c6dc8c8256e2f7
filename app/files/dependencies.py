"""FastAPI loaders for file routes (and the task routes that presign result links)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.core.dependencies import SettingsDep
from app.files.dispatch import DigestPublisher
from app.files.storage import Storage


def get_storage(settings: SettingsDep) -> Storage:
    """The bucket of this deployment (the boto3 client behind it is made once per process)."""
    return Storage.from_settings(settings)


def get_digest_publisher(request: Request) -> DigestPublisher:
    return DigestPublisher(request.app.state.celery)


StorageDep = Annotated[Storage, Depends(get_storage)]
DigestPublisherDep = Annotated[DigestPublisher, Depends(get_digest_publisher)]
