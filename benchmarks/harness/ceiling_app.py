"""The HTTP ceiling: a bare FastAPI validated POST, and a GET of a task, served with `taskgate api`'s
uvicorn settings.

It validates a body like a task submission (or answers a task's JSON) and checks the bearer key
against one string: no database, no broker, no cache. `python -m benchmarks.harness.ceiling_app --port P --workers N`.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import sys
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import FastAPI, Header, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

KEY_VARIABLE = "BENCH_CEILING_KEY"


class Submit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=100)
    input: dict[str, Any] = Field(default_factory=dict)
    priority: Literal["high", "default", "low"] = "default"


class Accepted(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    type: str
    status: str
    priority: str
    input: dict[str, Any]
    created_at: datetime


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {"level": record.levelname, "logger": record.name, "message": record.getMessage()}
        )


def create_app() -> FastAPI:
    # Logged like taskgate's API: every logger (uvicorn's access log too) as JSON lines on stderr.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    expected = f"Bearer {os.environ[KEY_VARIABLE]}"
    app = FastAPI()

    @app.post("/v1/projects/{project_id}/tasks", status_code=status.HTTP_202_ACCEPTED)
    async def submit_task(
        project_id: uuid.UUID,
        data: Submit,
        authorization: Annotated[str | None, Header()] = None,
    ) -> Accepted:
        if not hmac.compare_digest((authorization or "").encode(), expected.encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"}
            )
        return Accepted(
            id=uuid.uuid4(),
            project_id=project_id,
            type=data.type,
            status="queued",
            priority=data.priority,
            input=data.input,
            created_at=datetime.now(UTC),
        )

    @app.get("/v1/tasks/{task_id}")
    async def get_task(
        task_id: uuid.UUID, authorization: Annotated[str | None, Header()] = None
    ) -> Accepted:
        if not hmac.compare_digest((authorization or "").encode(), expected.encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"}
            )
        return Accepted(
            id=task_id,
            project_id=task_id,
            type="echo",
            status="succeeded",
            priority="default",
            input={"n": 1},
            created_at=datetime.now(UTC),
        )

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    # The arguments `taskgate api` gives uvicorn.run.
    uvicorn.run(
        "benchmarks.harness.ceiling_app:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_config=None,
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
