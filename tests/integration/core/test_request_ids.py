"""Request ids: kept or made at the edge, on every response (500s included), in the log lines."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.main import create_app
from tests.logs import JsonLogs


class BrokenRoute(Exception):
    """What the route below raises: a bug, not a domain error."""


@pytest.fixture
async def unguarded(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that gets the server's 500 answer instead of the app's exception."""

    async def broken() -> None:
        raise BrokenRoute("the handler has a bug")

    app.add_api_route("/v1/test/broken", broken, methods=["GET"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://taskgate.test") as client:
        yield client


def _client_of(settings: Settings, *networks: str) -> httpx.AsyncClient:
    """A client of an API that trusts `networks`; httpx's ASGI transport connects from 127.0.0.1."""
    proxies = [ipaddress.ip_network(network) for network in networks]
    api = settings.api.model_copy(update={"trusted_proxies": proxies})
    app = create_app(settings.model_copy(update={"api": api}))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test")


class TestServerErrors:
    async def test_an_unexpected_exception_is_a_500_problem_with_the_request_id(
        self, unguarded: httpx.AsyncClient
    ) -> None:
        response = await unguarded.get("/v1/test/broken", headers={"X-Request-ID": "boom-1"})

        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["x-request-id"] == "boom-1"
        body = response.json()
        assert body["request_id"] == "boom-1"
        assert body["type"].endswith("/internal-error")
        assert "bug" not in body["detail"]  # the exception's text stays in the log

    async def test_a_500_without_a_client_id_carries_the_one_made_for_it(
        self, unguarded: httpx.AsyncClient
    ) -> None:
        response = await unguarded.get("/v1/test/broken")

        assert response.status_code == 500
        assert len(response.headers["x-request-id"]) == 32
        assert response.json()["request_id"] == response.headers["x-request-id"]

    async def test_the_error_s_log_line_carries_the_same_id(
        self, unguarded: httpx.AsyncClient, json_logs: JsonLogs
    ) -> None:
        await unguarded.get("/v1/test/broken", headers={"X-Request-ID": "boom-2"})

        [error] = [e for e in json_logs.entries("app.core.errors") if e["level"] == "error"]
        assert error["request_id"] == "boom-2"
        assert "BrokenRoute" in error["exception"]


class TestTrustedProxies:
    async def test_a_sane_id_from_a_trusted_proxy_is_kept(self, settings: Settings) -> None:
        async with _client_of(settings, "127.0.0.0/8", "10.0.0.0/8") as client:
            response = await client.get("/health/live", headers={"X-Request-ID": "nginx-1"})

        assert response.headers["x-request-id"] == "nginx-1"

    async def test_an_id_from_a_peer_that_is_not_trusted_is_replaced(
        self, settings: Settings
    ) -> None:
        async with _client_of(settings, "10.0.0.0/8") as client:
            response = await client.get("/health/live", headers={"X-Request-ID": "forged-1"})

        assert response.headers["x-request-id"] != "forged-1"
        assert len(response.headers["x-request-id"]) == 32

    async def test_an_unsafe_id_from_a_trusted_proxy_is_replaced(self, settings: Settings) -> None:
        async with _client_of(settings, "127.0.0.1/32") as client:
            response = await client.get("/health/live", headers={"X-Request-ID": "a b"})

        assert len(response.headers["x-request-id"]) == 32

    def test_a_network_with_host_bits_is_refused_as_a_setting(self, settings: Settings) -> None:
        with pytest.raises(ValueError, match="trusted_proxies"):
            Settings.model_validate(
                {**settings.model_dump(), "api": {"trusted_proxies": ["10.0.0.1/8"]}}
            )
