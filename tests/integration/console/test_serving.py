"""The console's files at `/console`: their content types, the console's policy, revalidation,
problems for what is not there, and the API routes still matched before the mount."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI
from starlette.routing import Mount

from app.console.files import STATIC_DIR, storage_origins
from app.core.config import Settings
from app.core.headers import API_POLICY, console_policy


def _directives(policy: str) -> dict[str, list[str]]:
    return {
        name: sources
        for name, *sources in (part.split() for part in policy.split(";") if part.strip())
    }


class TestConsolePages:
    async def test_the_bare_path_leads_to_the_shell(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/console")

        assert response.status_code in (307, 308)
        assert response.headers["location"].endswith("/console/")

    async def test_the_shell_is_html_under_the_console_policy(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        response = await client.get("/console/")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["content-security-policy"] == console_policy(
            storage_origins(settings)
        )
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-cache"

    async def test_the_policy_allows_no_inline_script_or_style_but_reaches_s3(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        response = await client.get("/console/")

        policy = _directives(response.headers["content-security-policy"])
        assert settings.s3.endpoint_url is not None
        s3 = urlsplit(settings.s3.endpoint_url)
        assert policy["connect-src"] == ["'self'", f"{s3.scheme}://{s3.netloc}"]
        assert f"{s3.scheme}://{s3.netloc}" in policy["img-src"]
        assert policy["default-src"] == ["'none'"]
        assert policy["script-src"] == ["'self'"]
        assert policy["style-src"] == ["'self'"]
        assert policy["frame-ancestors"] == ["'none'"]

    async def test_the_shell_has_no_inline_script_and_loads_only_its_own_files(
        self, client: httpx.AsyncClient
    ) -> None:
        html = (await client.get("/console/")).text

        scripts = re.findall(r"<script[^>]*>", html)
        assert scripts == ['<script type="module" src="app.js">']
        assert "<style" not in html
        assert " style=" not in html
        assert not re.search(r"(src|href)=\"(https?:)?//", html)

    async def test_scripts_are_javascript_and_the_stylesheet_css(
        self, client: httpx.AsyncClient
    ) -> None:
        script = await client.get("/console/app.js")
        style = await client.get("/console/console.css")

        assert script.status_code == 200
        assert script.headers["content-type"].split(";")[0] in (
            "text/javascript",
            "application/javascript",
        )
        assert style.headers["content-type"].startswith("text/css")
        assert script.headers["content-security-policy"] == style.headers["content-security-policy"]

    async def test_every_module_imported_is_served(self, client: httpx.AsyncClient) -> None:
        for module in STATIC_DIR.glob("*.js"):
            for imported in re.findall(r'from "\./([^"]+)"', module.read_text()):
                response = await client.get(f"/console/{imported}")

                assert response.status_code == 200, imported

    async def test_an_unchanged_file_is_not_sent_again(self, client: httpx.AsyncClient) -> None:
        first = await client.get("/console/app.js")

        again = await client.get(
            "/console/app.js", headers={"If-None-Match": first.headers["etag"]}
        )

        assert again.status_code == 304

    async def test_a_missing_file_is_a_problem(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/console/no-such-file.js")

        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["request_id"] == response.headers["x-request-id"]

    async def test_a_path_that_only_starts_like_it_keeps_the_api_policy(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/consoles")

        assert response.status_code == 404
        assert response.headers["content-security-policy"] == API_POLICY


class TestRouteOrder:
    def test_the_console_is_mounted_after_every_api_route(self, app: FastAPI) -> None:
        routes = app.router.routes

        mounts = [index for index, route in enumerate(routes) if isinstance(route, Mount)]

        assert mounts == [len(routes) - 1]

    async def test_the_task_routes_still_answer_as_the_api(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"/v1/tasks/{uuid.uuid4()}")

        assert response.status_code == 401
        assert response.headers["content-security-policy"] == API_POLICY

    async def test_the_console_is_not_in_the_openapi_document(
        self, client: httpx.AsyncClient
    ) -> None:
        document = (await client.get("/openapi.json")).json()

        assert not [path for path in document["paths"] if path.startswith("/console")]
