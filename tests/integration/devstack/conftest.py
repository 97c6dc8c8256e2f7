"""Fixtures for the embedded engines launcher: real stacks in temporary folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from app.devstack import DevStack, StackUrls
from app.devstack.engines.seaweedfs import s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture(scope="module")
def devstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """A started throw-away stack (all three engines, durable=False) shared by a module."""
    stack = DevStack(tmp_path_factory.mktemp("devstack"), durable=False, environ={})
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture
def s3(devstack: DevStack) -> Iterator[S3Client]:
    """A boto3 client signed with the stack's credentials."""
    client = client_for(devstack.urls)
    yield client
    client.close()


def client_for(urls: StackUrls, *, secret: str | None = None) -> S3Client:
    """A boto3 client for the stack's S3, optionally signing with another secret."""
    return s3_client(
        endpoint_url=urls.s3_endpoint_url,
        access_key_id=urls.s3_access_key_id,
        secret_access_key=urls.s3_secret_access_key if secret is None else secret,
        region=urls.s3_region,
    )


def processes_in(folder: Path) -> list[int]:
    """PIDs of live processes working in `folder` (each engine runs in its data folder)."""
    root = folder.resolve()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z" and cwd.is_relative_to(root):
            found.append(int(entry.name))
    return found
