"""Embedded engines (PostgreSQL, Valkey, S3) from pip wheels for `taskgate dev` and the tests."""

from app.devstack.errors import EngineError
from app.devstack.stack import DevStack, StackUrls

__all__ = ["DevStack", "EngineError", "StackUrls"]
