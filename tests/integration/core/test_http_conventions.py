from __future__ import annotations

import uuid

import httpx


class TestRequestIds:
    async def test_a_sane_client_request_id_is_echoed(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})

        assert response.headers["x-request-id"] == "abc-123"

    async def test_an_unsafe_request_id_is_replaced(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health/live", headers={"X-Request-ID": "bad id\twith tabs"})

        assert response.headers["x-request-id"] != "bad id\twith tabs"
        assert len(response.headers["x-request-id"]) == 32

    async def test_a_request_without_an_id_gets_one(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health/live")

        assert len(response.headers["x-request-id"]) == 32


class TestProblemDetails:
    async def test_an_unknown_path_is_a_problem_json_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/nowhere", headers={"X-Request-ID": "req-1"})

        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["status"] == 404
        assert body["instance"] == "/v1/nowhere"
        assert body["request_id"] == "req-1"
        assert body["type"].endswith("/not-found")

    async def test_a_wrong_method_is_a_problem_json_405(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/health/live")

        assert response.status_code == 405
        assert response.json()["type"].endswith("/method-not-allowed")

    async def test_a_405_allows_every_method_of_the_path(self, client: httpx.AsyncClient) -> None:
        response = await client.put(f"/v1/webhooks/{uuid.uuid4()}")

        assert response.status_code == 405
        assert response.headers["allow"] == "DELETE, GET, PATCH"


class TestOpenApi:
    async def test_the_document_describes_the_operations_routes(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/openapi.json")

        assert response.status_code == 200
        document = response.json()
        assert {"/health/live", "/health/ready", "/metrics"} <= set(document["paths"])
        assert "Problem" in document["components"]["schemas"]


class TestMetrics:
    async def test_requests_are_counted_by_route_template(self, client: httpx.AsyncClient) -> None:
        await client.get("/health/live")

        response = await client.get("/metrics")

        assert response.status_code == 200
        assert 'taskgate_http_requests_total{method="GET",route="/health/live",status="200"}' in (
            response.text
        )

    async def test_a_route_under_the_v1_prefix_is_labelled_with_its_whole_template(
        self, client: httpx.AsyncClient
    ) -> None:
        await client.get(f"/v1/projects/{uuid.uuid4()}/members")

        response = await client.get("/metrics")

        labels = 'method="GET",route="/v1/projects/{project_id}/members",status="401"'
        assert f"taskgate_http_requests_total{{{labels}}}" in response.text
