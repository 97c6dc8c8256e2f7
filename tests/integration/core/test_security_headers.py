"""Security headers on every answer: JSON, problems (404, 422, 500), /health, and the docs pages,
whose own policy still lets them load what FastAPI's HTML asks for."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.headers import API_POLICY, DOCS_POLICY
from app.main import create_app
from tests.factories import auth_headers, make_user

COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
API_HEADERS = {**COMMON, "content-security-policy": API_POLICY}
DOCS_HEADERS = {**COMMON, "content-security-policy": DOCS_POLICY}


def _security_headers(response: httpx.Response) -> dict[str, str]:
    return {name: response.headers.get(name, "") for name in API_HEADERS}


def _directives(policy: str) -> dict[str, list[str]]:
    return {
        name: sources
        for name, *sources in (part.split() for part in policy.split(";") if part.strip())
    }


def _allowed(url: str, sources: list[str]) -> bool:
    parts = urlsplit(url)
    if not parts.scheme:  # a path on this origin
        return "'self'" in sources
    return f"{parts.scheme}://{parts.netloc}" in sources


class BrokenRoute(Exception):
    """What the route below raises: a bug, not a domain error."""


@pytest.fixture
async def unguarded(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that gets the server's 500 answer instead of the app's exception."""

    async def broken() -> None:
        raise BrokenRoute("the handler has a bug")

    app.add_api_route("/v1/test/broken-headers", broken, methods=["GET"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://taskgate.test") as client:
        yield client


class TestApiAnswers:
    async def test_an_authenticated_json_answer_carries_them(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)

        response = await client.get("/v1/users/me", headers=auth_headers(user))

        assert response.status_code == 200
        assert _security_headers(response) == API_HEADERS

    async def test_a_token_answer_is_not_stored(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/auth/token", data={"username": "nobody@example.com", "password": "x" * 12}
        )

        assert response.status_code == 401
        assert _security_headers(response) == API_HEADERS

    async def test_a_404_problem_carries_them(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/no-such-route")

        assert response.status_code == 404
        assert _security_headers(response) == API_HEADERS

    async def test_a_422_problem_carries_them(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/auth/register", json={"email": "not an address"})

        assert response.status_code == 422
        assert _security_headers(response) == API_HEADERS

    async def test_a_500_problem_carries_them(self, unguarded: httpx.AsyncClient) -> None:
        response = await unguarded.get("/v1/test/broken-headers")

        assert response.status_code == 500
        assert _security_headers(response) == API_HEADERS

    async def test_health_carries_them(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health/live")

        assert response.status_code == 200
        assert _security_headers(response) == API_HEADERS

    async def test_the_openapi_document_has_the_api_policy(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/openapi.json")

        assert _security_headers(response) == API_HEADERS


class TestDocsPages:
    @pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
    async def test_a_docs_page_has_the_docs_policy(
        self, client: httpx.AsyncClient, path: str
    ) -> None:
        response = await client.get(path)

        assert response.status_code == 200
        assert _security_headers(response) == DOCS_HEADERS

    @pytest.mark.parametrize("path", ["/docs", "/redoc"])
    async def test_every_asset_a_docs_page_loads_is_allowed_by_its_policy(
        self, client: httpx.AsyncClient, path: str
    ) -> None:
        response = await client.get(path)

        policy = _directives(response.headers["content-security-policy"])
        html = response.text
        scripts = re.findall(r'<script src="([^"]+)"', html)
        styles = re.findall(r'<link[^>]*href="([^"]+)"[^>]*rel="stylesheet"', html)
        styles += re.findall(r'<link[^>]*rel="stylesheet"[^>]*href="([^"]+)"', html)
        icons = re.findall(r'<link rel="shortcut icon" href="([^"]+)"', html)
        assert scripts
        assert styles
        assert icons
        refused = [
            url
            for urls, directive in (
                (scripts, "script-src"),
                (styles, "style-src"),
                (icons, "img-src"),
            )
            for url in urls
            if not _allowed(url, policy[directive])
        ]
        assert refused == []
        if "<script>" in html:  # an inline script
            assert "'unsafe-inline'" in policy["script-src"]
        if "<style>" in html:
            assert "'unsafe-inline'" in policy["style-src"]
        assert _allowed("/openapi.json", policy["connect-src"])

    async def test_the_docs_policy_stays_on_the_docs_pages(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/docs/not-a-docs-page")

        assert response.headers["content-security-policy"] == API_POLICY


class TestStrictTransportSecurity:
    async def test_an_https_request_gets_it(self, app: FastAPI) -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://t.test") as client:
            response = await client.get("/health/live")

        assert response.headers["strict-transport-security"] == "max-age=31536000"

    async def test_a_plain_http_request_does_not(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health/live")

        assert "strict-transport-security" not in response.headers

    async def test_hsts_always_sends_it_on_plain_http_too(self, settings: Settings) -> None:
        api = settings.api.model_copy(update={"hsts_always": True, "hsts_max_age_s": 600})
        app = create_app(settings.model_copy(update={"api": api}))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t.test") as client:
            response = await client.get("/health/live")

        assert response.headers["strict-transport-security"] == "max-age=600"
