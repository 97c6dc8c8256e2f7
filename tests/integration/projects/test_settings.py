"""Typed project settings: what PATCH accepts, what it refuses, and what reads show."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import ProjectDefaults, Settings
from app.events.models import Event
from app.main import create_app
from app.projects.models import Project
from app.projects.settings import ProjectSettings, effective_settings, settings_of
from tests.factories import auth_headers, make_project, make_user

DEFAULTS = ProjectDefaults(
    max_queued_tasks=50, max_running_tasks=5, submit_rate_per_minute=600, read_rate_per_minute=1200
)


@pytest.fixture
async def app(settings: Settings, db: async_sessionmaker[AsyncSession]) -> AsyncIterator[FastAPI]:
    """The API of a deployment whose project defaults are `DEFAULTS`."""
    application = create_app(settings.model_copy(update={"projects": DEFAULTS}))
    async with application.router.lifespan_context(application):
        application.state.sessionmaker = db
        yield application


async def _stored(session: AsyncSession, project: Project) -> dict[str, Any]:
    await session.refresh(project)
    return project.settings


class TestUpdateSettings:
    async def test_stores_the_settings_and_shows_them_with_the_deployment_defaults(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        project = await make_project(session, owner=user)

        response = await client.patch(
            f"/v1/projects/{project.id}",
            json={"settings": {"max_queued_tasks": 3, "submit_rate_per_minute": 60}},
            headers=auth_headers(user),
        )

        assert response.status_code == 200
        body = response.json()
        assert body["settings"] == {"max_queued_tasks": 3, "submit_rate_per_minute": 60}
        assert body["effective_settings"] == {
            "max_queued_tasks": 3,
            "max_running_tasks": 5,
            "submit_rate_per_minute": 60,
            "read_rate_per_minute": 1200,
        }
        assert await _stored(session, project) == {
            "max_queued_tasks": 3,
            "submit_rate_per_minute": 60,
        }

    async def test_null_puts_a_field_back_to_the_deployment_default(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        project = await make_project(
            session, owner=user, settings={"max_queued_tasks": 3, "max_running_tasks": 2}
        )

        response = await client.patch(
            f"/v1/projects/{project.id}",
            json={"settings": {"max_queued_tasks": None}},
            headers=auth_headers(user),
        )

        assert response.status_code == 200
        assert response.json()["settings"] == {"max_running_tasks": 2}
        assert response.json()["effective_settings"]["max_queued_tasks"] == 50
        assert await _stored(session, project) == {"max_running_tasks": 2}

    async def test_an_integral_json_number_such_as_3_0_is_the_integer_it_names(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        project = await make_project(session, owner=user)

        response = await client.patch(
            f"/v1/projects/{project.id}",
            content=b'{"settings": {"max_queued_tasks": 3.0}}',
            headers={**auth_headers(user), "Content-Type": "application/json"},
        )

        assert response.status_code == 200
        assert response.json()["settings"] == {"max_queued_tasks": 3}
        assert await _stored(session, project) == {"max_queued_tasks": 3}

    async def test_the_audit_event_names_the_keys_sent(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        project = await make_project(session, owner=user, settings={"max_running_tasks": 2})

        await client.patch(
            f"/v1/projects/{project.id}",
            json={"settings": {"max_running_tasks": None, "read_rate_per_minute": 10}},
            headers=auth_headers(user),
        )

        event = await session.scalar(
            select(Event).where(Event.subject_id == project.id, Event.kind == "project.updated")
        )
        assert event is not None
        assert event.data["settings_keys"] == ["max_running_tasks", "read_rate_per_minute"]

    @pytest.mark.parametrize(
        ("sent", "field", "error_type"),
        [
            ({"max_queued_tasks": 0}, "max_queued_tasks", "greater_than_equal"),
            ({"max_queued_tasks": 1_000_001}, "max_queued_tasks", "less_than_equal"),
            ({"max_running_tasks": -1}, "max_running_tasks", "greater_than_equal"),
            ({"submit_rate_per_minute": 0}, "submit_rate_per_minute", "greater_than_equal"),
            ({"read_rate_per_minute": 10**7}, "read_rate_per_minute", "less_than_equal"),
            ({"max_queued_tasks": "3"}, "max_queued_tasks", "int_type"),
            ({"max_queued_tasks": 3.5}, "max_queued_tasks", "int_type"),
            ({"max_queued_tasks": True}, "max_queued_tasks", "int_type"),
            ({"max_queud_tasks": 3}, "max_queud_tasks", "extra_forbidden"),
            (
                {"default_webhook_url": "https://example.com"},
                "default_webhook_url",
                "extra_forbidden",
            ),
        ],
    )
    async def test_an_unknown_key_or_a_value_out_of_range_is_a_422_naming_it_and_changes_nothing(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        sent: dict[str, Any],
        field: str,
        error_type: str,
    ) -> None:
        user = await make_user(session)
        project = await make_project(session, owner=user, settings={"max_running_tasks": 2})
        name = project.name

        response = await client.patch(
            f"/v1/projects/{project.id}",
            json={"name": "renamed", "settings": {"max_queued_tasks": 9, **sent}},
            headers=auth_headers(user),
        )

        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        errors = response.json()["errors"]
        assert [(error["loc"], error["type"]) for error in errors] == [
            (["body", "settings", field], error_type)
        ]
        assert await _stored(session, project) == {"max_running_tasks": 2}
        assert project.name == name


class TestReadSettings:
    async def test_a_new_project_has_no_settings_of_its_own_and_the_deployment_defaults(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)

        response = await client.post(
            "/v1/projects", json={"name": "fresh"}, headers=auth_headers(user)
        )

        assert response.status_code == 201
        assert response.json()["settings"] == {}
        assert response.json()["effective_settings"] == DEFAULTS.model_dump()

    async def test_keys_and_values_stored_before_settings_were_typed_are_left_out(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        legacy = {"max_queued_tasks": "many", "max_running_tasks": 4, "color": {"x": [1]}}
        project = await make_project(session, owner=user, settings=legacy)

        listed = await client.get("/v1/projects", headers=auth_headers(user))
        read = await client.get(f"/v1/projects/{project.id}", headers=auth_headers(user))

        assert listed.status_code == read.status_code == 200
        assert listed.json()["items"][0]["settings"] == {"max_running_tasks": 4}
        assert read.json()["settings"] == {"max_running_tasks": 4}
        assert read.json()["effective_settings"]["max_queued_tasks"] == 50
        assert settings_of(project) == ProjectSettings(max_running_tasks=4)

    async def test_a_patch_over_a_legacy_row_keeps_only_what_the_model_knows(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        project = await make_project(
            session, owner=user, settings={"color": "red", "max_running_tasks": 0}
        )

        response = await client.patch(
            f"/v1/projects/{project.id}",
            json={"settings": {"max_queued_tasks": 7}},
            headers=auth_headers(user),
        )

        assert response.status_code == 200
        assert await _stored(session, project) == {"max_queued_tasks": 7}

    async def test_the_openapi_document_names_the_settings_schemas(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/openapi.json")

        schemas = response.json()["components"]["schemas"]
        settings_schema = schemas["ProjectSettings"]
        assert settings_schema["additionalProperties"] is False
        assert set(settings_schema["properties"]) == set(ProjectDefaults.model_fields)
        assert schemas["ProjectRead"]["properties"]["settings"]["$ref"].endswith("/ProjectSettings")
        assert "EffectiveProjectSettings" in schemas
        update = schemas["ProjectUpdate"]["properties"]["settings"]["anyOf"]
        assert {"$ref": "#/components/schemas/ProjectSettings"} in update


class TestEffectiveSettings:
    def test_the_project_s_own_fields_win_over_the_defaults(self) -> None:
        own = ProjectSettings(max_running_tasks=1)

        effective = effective_settings(own, DEFAULTS)

        assert effective.model_dump() == {**DEFAULTS.model_dump(), "max_running_tasks": 1}
