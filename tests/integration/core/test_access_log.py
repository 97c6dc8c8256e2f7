"""One JSON access line per request: method, route template, status, duration, ids; no query."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import auth_headers, make_api_key, make_project, make_user
from tests.logs import JsonLogs

ACCESS = "taskgate.access"


def _access_lines(logs: JsonLogs) -> list[dict[str, Any]]:
    return logs.entries(ACCESS)


class TestAccessLog:
    async def test_a_user_s_request_is_one_line_with_route_status_duration_and_ids(
        self, client: httpx.AsyncClient, session: AsyncSession, json_logs: JsonLogs
    ) -> None:
        user = await make_user(session)
        project = await make_project(session, owner=user)

        response = await client.get(
            f"/v1/projects/{project.id}/members",
            params={"limit": 5, "cursor_hint": "query-text-never-logged"},
            headers={**auth_headers(user), "X-Request-ID": "access-1"},
        )

        assert response.status_code == 200
        [line] = _access_lines(json_logs)
        assert line["level"] == "info"
        assert line["method"] == "GET"
        assert line["route"] == "/v1/projects/{project_id}/members"
        assert line["status"] == response.status_code
        assert isinstance(line["duration_ms"], float)
        assert line["request_id"] == "access-1"
        assert line["user_id"] == str(user.id)
        assert "api_key_id" not in line
        assert line["project_id"] == str(project.id)
        assert line["message"] == f"GET /v1/projects/{{project_id}}/members {response.status_code}"
        assert "query-text-never-logged" not in "".join(json_logs.lines_of(ACCESS))

    async def test_an_api_key_s_request_names_the_key_not_a_user(
        self, client: httpx.AsyncClient, session: AsyncSession, json_logs: JsonLogs
    ) -> None:
        user = await make_user(session)
        project = await make_project(session, owner=user)
        api_key, secret = await make_api_key(session, project)

        response = await client.post(
            f"/v1/projects/{project.id}/tasks",
            json={"type": "echo", "input": {}},
            headers=auth_headers(secret),
        )

        assert response.status_code == 202
        [line] = _access_lines(json_logs)
        assert (line["method"], line["route"], line["status"]) == (
            "POST",
            "/v1/projects/{project_id}/tasks",
            202,
        )
        assert line["api_key_id"] == str(api_key.id)
        assert "user_id" not in line
        assert line["project_id"] == str(project.id)

    async def test_a_path_without_a_project_has_no_project_id(
        self, client: httpx.AsyncClient, session: AsyncSession, json_logs: JsonLogs
    ) -> None:
        user = await make_user(session)

        response = await client.get("/v1/users/me", headers=auth_headers(user))

        assert response.status_code == 200
        [line] = _access_lines(json_logs)
        assert (line["route"], line["user_id"]) == ("/v1/users/me", str(user.id))
        assert "project_id" not in line

    async def test_a_refused_credential_and_an_unknown_path_name_no_caller(
        self, client: httpx.AsyncClient, json_logs: JsonLogs
    ) -> None:
        refused = await client.get("/v1/users/me", headers=auth_headers("not-a-token"))
        unknown = await client.get("/v1/nowhere/at/all")

        assert (refused.status_code, unknown.status_code) == (401, 404)
        first, second = _access_lines(json_logs)
        assert (first["route"], first["status"]) == ("/v1/users/me", 401)
        assert (second["route"], second["status"]) == ("unmatched", 404)
        assert not {"user_id", "api_key_id", "project_id"} & (set(first) | set(second))

    async def test_a_project_path_that_is_not_an_id_is_not_logged_as_one(
        self, client: httpx.AsyncClient, session: AsyncSession, json_logs: JsonLogs
    ) -> None:
        user = await make_user(session)

        response = await client.get("/v1/projects/not-an-id", headers=auth_headers(user))

        assert response.status_code == 422
        [line] = _access_lines(json_logs)
        assert "project_id" not in line
        assert "not-an-id" not in "".join(json_logs.lines_of(ACCESS))
