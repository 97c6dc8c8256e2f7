"""Whatever a client sends to the file routes is a 4xx problem, never a 500."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import auth_headers, make_project, make_user

P = "/v1/projects/{project}"
F = "/v1/files/{random}"
JSON_CASES = [
    ("POST", P + "/files", b'{"filename": "a", "content_type": "a/b", "size": NaN}', 422),
    ("POST", P + "/files", b'{"filename": "a", "content_type": "a/b", "size": 1e400}', 422),
    (
        "POST",
        P + "/files",
        b'{"filename": "a", "content_type": "a/b", "size": ' + b"9" * 40 + b"}",
        413,
    ),
    ("POST", P + "/files", b'{"filename": "a\\u0000", "content_type": "a/b", "size": 1}', 422),
    ("POST", P + "/files", b'{"filename": "\\ud800", "content_type": "a/b", "size": 1}', 422),
    ("POST", P + "/files", b'{"filename": "a", "content_type": "t\\u00e9xt/b", "size": 1}', 422),
    ("POST", P + "/files", b'{"filename": ["a"], "content_type": "a/b", "size": 1}', 422),
    ("POST", P + "/files", b"[]", 422),
    ("POST", P + "/files", b"{", 422),
    ("GET", P + "/files?status=gone", None, 422),
    ("GET", P + "/files?cursor=%00%00", None, 400),
    ("GET", P + "/files?limit=0", None, 422),
    ("GET", "/v1/files/not-a-uuid", None, 422),
    ("DELETE", "/v1/files/%00", None, 422),
    ("POST", F + "/complete", None, 404),
    ("GET", F, None, 404),
    ("POST", P + "/tasks", b'{"type": "file.checksum", "input": {"file_id": "nope"}}', 422),
    ("POST", P + "/tasks", b'{"type": "file.checksum", "input": {"file_id": null}}', 422),
    ("POST", P + "/tasks", b'{"type": "archive.zip", "input": {"file_ids": []}}', 422),
    (
        "POST",
        P + "/tasks",
        b'{"type": "csv.profile", "input": {"file_id": "' + b"0" * 36 + b'"}}',
        422,
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"), JSON_CASES, ids=range(len(JSON_CASES))
)
async def test_hostile_json_is_a_client_error(
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
        method,
        path.format(project=project.id, random="00000000-0000-4000-8000-000000000000"),
        content=body,
        headers=headers,
    )

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


def _part(disposition: bytes, *, extra: bytes = b"") -> bytes:
    return b"--x\r\nContent-Disposition: " + disposition + b"\r\n" + extra + b"\r\nhi\r\n--x--\r\n"


FORM_CASES = [
    ("multipart/form-data; boundary=x", _part(b'form-data; name="file"; filename="a\x00b"')),
    ("multipart/form-data; boundary=x", _part(b'form-data; name="file"; filename="\xff\xfe"')),
    (
        "multipart/form-data; boundary=x",
        _part(b'form-data; name="file"; filename="' + b"a" * 300 + b'"'),
    ),
    (
        "multipart/form-data; boundary=x",
        _part(b'form-data; name="file"; filename="a"', extra=b"X: " + b"y" * 9000 + b"\r\n"),
    ),
    (
        "multipart/form-data; boundary=x",
        _part(b'form-data; name="file"; filename="a"', extra=b"Content-Type: \xff\r\n"),
    ),
    ("multipart/form-data; boundary=x", _part(b"form-data")),
    ("multipart/form-data; boundary=" + "y" * 300, b""),
    ("multipart/form-data; boundary=x", b"--x--\r\n"),
    ("multipart/form-data; boundary=x", b"\x00" * 100),
    ("text/plain", b"hello"),
]


@pytest.mark.parametrize(("content_type", "body"), FORM_CASES, ids=range(len(FORM_CASES)))
async def test_hostile_uploads_are_a_client_error(
    client: httpx.AsyncClient, session: AsyncSession, content_type: str, body: bytes
) -> None:
    user = await make_user(session)
    project = await make_project(session, owner=user)

    response = await client.post(
        f"/v1/projects/{project.id}/files:upload",
        content=body,
        headers={**auth_headers(user), "content-type": content_type},
    )

    assert response.status_code in (415, 422), response.text
    assert response.headers["content-type"] == "application/problem+json"
