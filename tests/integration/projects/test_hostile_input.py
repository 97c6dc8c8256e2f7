"""Whatever a client sends gets a 4xx problem, never a 500 (NUL, NaN, deep nesting, odd text)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import auth_headers, make_project, make_user

P = "/v1/projects/{project}"
CASES = [
    ("POST", "/v1/projects", b'{"name": "a\\u0000b"}', 422),
    ("PATCH", P, b'{"name": "\\u0000"}', 422),
    ("PATCH", P, b'{"settings": {"max_queued_tasks": NaN}}', 422),
    ("PATCH", P, b'{"settings": {"max_queued_tasks": -Infinity}}', 422),
    ("PATCH", P, b'{"settings": {"max_queued_tasks": 1e400}}', 422),
    ("PATCH", P, b'{"settings": {"max_queued_tasks": ["x\\u0000"]}}', 422),
    ("PATCH", P, b'{"settings": {"a\\u0000": 1}}', 422),
    ("PATCH", P, b'{"settings": {"max_queued_tasks": ' + b"[" * 300 + b"]" * 300 + b"}}", 422),
    ("PATCH", P, b'{"settings": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
    ("PATCH", P, b'{"settings": {"max_queued_tasks": 123456789012345678901234567890}}', 422),
    ("PATCH", P, b'{"settings": {"max_queued_tasks": 10}}', 200),
    ("PATCH", P, b'{"settings": "not an object"}', 422),
    ("POST", P + "/api-keys", b'{"name": "a\\u0000"}', 422),
    ("POST", P + "/members", b'{"email": "a\\u0000@example.com"}', 422),
    ("POST", P + "/members", b'{"email": "ada@example.com", "role": "god"}', 422),
    ("GET", P + "/events?kind=a%00b", None, 422),
    ("GET", P + "/events?since=2026-01-01T00:00:00%2B99:00", None, 422),
    ("GET", P + "/events?since=9999-12-31T23:59:59Z", None, 200),
    ("GET", P + "/members/not-a-uuid", None, 405),
    ("DELETE", P + "/members/not-a-uuid", None, 422),
    ("DELETE", P + "/api-keys/%00", None, 422),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), CASES, ids=range(len(CASES)))
async def test_hostile_input_is_a_client_error(
    client: httpx.AsyncClient,
    session: AsyncSession,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
) -> None:
    user = await make_user(session)
    project = await make_project(session, owner=user)
    headers = {**auth_headers(user), "content-type": "application/json"}

    response = await client.request(
        method, path.format(project=project.id), content=body, headers=headers
    )

    assert response.status_code == status, response.text
    if status >= 400:
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "form",
    [
        {"username": "a\x00b@example.com", "password": "x"},
        {"username": "İ@example.com", "password": "x\x00"},
    ],
)
async def test_odd_sign_in_forms_are_client_errors(
    client: httpx.AsyncClient, form: dict[str, str]
) -> None:
    response = await client.post("/v1/auth/token", data=form)

    assert 400 <= response.status_code < 500


@pytest.mark.parametrize(
    "authorization",
    [
        b"Bearer tg_\x00",
        b"Bearer a.b\x00.c",
        b"Bearer " + b"x" * 100_000,
        "Bearer é".encode(),
        "Bearer tg_é".encode("latin-1"),
    ],
)
async def test_odd_credentials_are_401(client: httpx.AsyncClient, authorization: bytes) -> None:
    response = await client.get("/v1/users/me", headers={b"Authorization": authorization})

    assert response.status_code == 401
