"""The three embedded engines: PostgreSQL, Valkey and SeaweedFS, run from their pip wheels."""

from __future__ import annotations

from collections.abc import Mapping

from app.devstack.engines.base import Engine
from app.devstack.engines.postgres import Postgres
from app.devstack.engines.seaweedfs import SeaweedS3
from app.devstack.engines.valkey import Valkey

ENGINE_TYPES: Mapping[str, type[Engine]] = {
    Postgres.name: Postgres,
    Valkey.name: Valkey,
    SeaweedS3.name: SeaweedS3,
}
