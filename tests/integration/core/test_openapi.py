"""The served OpenAPI document as client generators read it (decision 0017)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

PROBLEM = "application/problem+json"


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    served: dict[str, Any] = response.json()
    return served


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


class TestOperationIds:
    async def test_each_is_its_route_function_s_name_and_unique(
        self, app: FastAPI, document: dict[str, Any]
    ) -> None:
        names = {
            (method, route.path): route.name
            for route in iter_route_contexts(app.routes)
            if isinstance(route.original_route, APIRoute) and route.include_in_schema
            for method in route.methods or ()
        }

        ids = {
            (method, path): operation["operationId"]
            for method, path, operation in _operations(document)
        }

        assert ids == names
        assert len(set(ids.values())) == len(ids)


class TestResponses:
    async def test_every_operation_has_a_default_problem(self, document: dict[str, Any]) -> None:
        for method, path, operation in _operations(document):
            default = operation["responses"].get("default")
            assert default is not None, f"{method} {path}"
            assert PROBLEM in default["content"], f"{method} {path}"

    async def test_every_json_body_documents_the_400_of_an_unparseable_one(
        self, document: dict[str, Any]
    ) -> None:
        with_json = [
            (method, path, operation)
            for method, path, operation in _operations(document)
            if "application/json" in operation.get("requestBody", {}).get("content", {})
        ]

        assert with_json
        for method, path, operation in with_json:
            assert PROBLEM in operation["responses"]["400"]["content"], f"{method} {path}"

    async def test_authenticated_operations_document_401_with_www_authenticate_and_503(
        self, document: dict[str, Any]
    ) -> None:
        for method, path, operation in _operations(document):
            if not operation.get("security"):
                continue
            responses = operation["responses"]
            assert "WWW-Authenticate" in responses["401"]["headers"], f"{method} {path}"
            assert "503" in responses, f"{method} {path}"

    async def test_the_refresh_401_asks_for_no_authorization_header(
        self, document: dict[str, Any]
    ) -> None:
        refused = document["paths"]["/v1/auth/refresh"]["post"]["responses"]["401"]

        assert "headers" not in refused
        assert refused["description"] == "Invalid refresh token"

    async def test_metrics_are_plain_text(self, document: dict[str, Any]) -> None:
        ok = document["paths"]["/metrics"]["get"]["responses"]["200"]

        assert list(ok["content"]) == ["text/plain"]


class TestSchemas:
    async def test_the_upload_body_is_a_named_model(self, document: dict[str, Any]) -> None:
        body = document["paths"]["/v1/projects/{project_id}/files:upload"]["post"]["requestBody"]

        schema = body["content"]["multipart/form-data"]["schema"]

        assert schema == {"$ref": "#/components/schemas/FileUploadForm"}
        assert document["components"]["schemas"]["FileUploadForm"]["required"] == ["file"]

    @pytest.mark.parametrize(
        ("request_model", "response_model", "field", "enum"),
        [
            ("ApiKeyCreate", "ApiKeyRead", "scopes", "ApiKeyScope"),
            ("ApiKeyCreate", "ApiKeyCreated", "scopes", "ApiKeyScope"),
            ("WebhookCreate", "WebhookRead", "events", "EventKind"),
        ],
    )
    async def test_requests_and_responses_share_their_enums(
        self,
        document: dict[str, Any],
        request_model: str,
        response_model: str,
        field: str,
        enum: str,
    ) -> None:
        schemas = document["components"]["schemas"]
        reference = {"$ref": f"#/components/schemas/{enum}"}

        assert schemas[request_model]["properties"][field]["items"] == reference
        assert schemas[response_model]["properties"][field]["items"] == reference
        assert "enum" in schemas[enum]

    async def test_a_file_s_declared_size_is_bounded_by_the_deployment_s_maximum(
        self, app: FastAPI, document: dict[str, Any]
    ) -> None:
        size = document["components"]["schemas"]["FileCreate"]["properties"]["size"]

        assert size["maximum"] == app.state.settings.files.max_upload_bytes
