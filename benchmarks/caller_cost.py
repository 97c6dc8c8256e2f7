"""What FastAPI's resolution of a submit's caller costs the API process, per request: the
route's dependencies in the shape submit had (the role check depending on the caller, the caller
on the two Bearer schemes, each resolved as a dependency of its own) against the shape it has
(one dependency that reads `Authorization` itself, `auth.dependencies.bearer_of`, and documents
the schemes through `core.openapi.secured_by`).

    .venv/bin/python -m benchmarks.caller_cost [--requests 20000]

Each shape is a FastAPI app with submit's parameters (a path id, a JSON body model, an optional
header) whose dependencies do no work of their own, called in this process through ASGI (no
socket, no server): the difference is what the dependency graph costs, nothing else. Prints CPU
µs per request of each shape, and checks that both document the same security.
"""

# No `from __future__ import annotations`: FastAPI must see the local `access` of `_app`.
import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2PasswordBearer
from pydantic import BaseModel

from app.auth.dependencies import bearer_of
from app.core.openapi import build_openapi, secured_by

_user_token = OAuth2PasswordBearer(tokenUrl="/token", scheme_name="UserToken", auto_error=False)
_api_key = HTTPBearer(scheme_name="ApiKey", auto_error=False)


class Body(BaseModel):
    type: str
    input: dict[str, Any] = {}


async def _caller_from_schemes(
    request: Request,
    token: Annotated[str | None, Depends(_user_token)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_api_key)],
) -> str:
    bearer = token or (credentials.credentials if credentials is not None else "")
    return f"{request.method} {bearer}"


class _RoleOfCaller:
    async def __call__(
        self, project_id: uuid.UUID, caller: Annotated[str, Depends(_caller_from_schemes)]
    ) -> str:
        return f"{project_id} {caller}"


class _RoleReadingTheHeader:
    def __init__(self) -> None:
        secured_by(self, _user_token, _api_key)

    async def __call__(self, request: Request, project_id: uuid.UUID) -> str:
        return f"{project_id} {request.method} {bearer_of(request)}"


def _app(access: Any) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/projects/{project_id}/tasks", status_code=202)
    async def submit(
        request: Request,
        data: Body,
        caller: Annotated[str, Depends(access)],
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> dict[str, str]:
        return {"type": data.type, "caller": caller, "key": idempotency_key or request.method}

    return app


Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


async def _cpu_per_request(app: FastAPI, requests: int) -> float:
    body = json.dumps({"type": "echo", "input": {"n": 1}}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/v1/projects/{uuid.uuid4()}/tasks",
        "raw_path": b"",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", b"Bearer tg_0123456789abcdef"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    statuses: list[int] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(200):  # warm
        await app(dict(scope), receive, send)
    started = time.process_time()
    for _ in range(requests):
        await app(dict(scope), receive, send)
    elapsed = time.process_time() - started
    if set(statuses) != {202}:
        raise SystemExit(f"unexpected statuses: {sorted(set(statuses))}")
    return elapsed / requests * 1e6


def _security(app: FastAPI) -> list[dict[str, list[str]]]:
    document = build_openapi(title="t", version="1", description="", routes=app.routes)
    operation = document["paths"]["/v1/projects/{project_id}/tasks"]["post"]
    security: list[dict[str, list[str]]] = operation["security"]
    return security


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    before, after = _app(_RoleOfCaller()), _app(_RoleReadingTheHeader())
    if _security(before) != _security(after):
        raise SystemExit(f"documents differ: {_security(before)} / {_security(after)}")
    # Alternating rounds: a shared machine's drift reaches both shapes alike.
    rounds: dict[str, list[float]] = {"schemes as dependencies": [], "one dependency": []}
    for _ in range(3):
        rounds["schemes as dependencies"].append(
            asyncio.run(_cpu_per_request(before, args.requests))
        )
        rounds["one dependency"].append(asyncio.run(_cpu_per_request(after, args.requests)))
    for shape, figures in rounds.items():
        print(f"{shape}: {min(figures):.1f} µs CPU per request (best of {len(figures)})")  # noqa: T201
    print(f"documented security, both: {_security(after)}")  # noqa: T201


if __name__ == "__main__":
    main()
