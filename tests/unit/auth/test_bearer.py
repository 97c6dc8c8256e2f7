"""`bearer_of` reads `Authorization` as the two documented schemes read it, and a route that
depends on it alone still documents both (`core.openapi.secured_by`)."""

from __future__ import annotations

import uuid

import pytest
from fastapi import FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2PasswordBearer

from app.auth.dependencies import BEARER_SCHEMES, bearer_of, get_detached_principal
from app.auth.exceptions import InvalidCredentials
from app.core.openapi import build_openapi
from app.projects.dependencies import DetachedMemberAccess

HEADERS = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer tg_abc",
    "bearer tg_abc",
    "BEARER eyJ.a.b",
    "Bearer  two-spaces",
    "Bearer tg_abc trailing words",
    "Basic dXNlcjpwYXNz",
    "Token tg_abc",
    " Bearer tg_abc",
]


def _request(authorization: str | None) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


async def _as_the_schemes_read_it(request: Request) -> str | None:
    user_token, api_key = BEARER_SCHEMES
    assert isinstance(user_token, OAuth2PasswordBearer)
    assert isinstance(api_key, HTTPBearer)
    token = await user_token(request)
    credentials: HTTPAuthorizationCredentials | None = await api_key(request)
    return token or (credentials.credentials if credentials is not None else None)


@pytest.mark.parametrize("authorization", HEADERS)
async def test_bearer_of_reads_what_the_schemes_read(authorization: str | None) -> None:
    request = _request(authorization)
    expected = await _as_the_schemes_read_it(request)
    if expected is None:
        with pytest.raises(InvalidCredentials):
            bearer_of(request)
    else:
        assert bearer_of(request) == expected


def test_routes_that_read_the_header_themselves_document_both_schemes() -> None:
    app = FastAPI()

    @app.get("/principal")
    async def principal(request: Request) -> None:
        await get_detached_principal(request)

    @app.post("/projects/{project_id}/things")
    async def things(project_id: uuid.UUID, access: DetachedMemberAccess) -> None:
        del project_id, access

    document = build_openapi(title="t", version="1", description="", routes=app.routes)
    # A route that calls the function without depending on it documents nothing.
    assert "security" not in document["paths"]["/principal"]["get"]
    operation = document["paths"]["/projects/{project_id}/things"]["post"]
    assert operation["security"] == [{"UserToken": []}, {"ApiKey": []}]
    assert set(document["components"]["securitySchemes"]) == {"UserToken", "ApiKey"}
    assert "401" in operation["responses"]
