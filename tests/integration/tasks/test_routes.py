"""The task routes over HTTP (in-process ASGI), against the real database and broker."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import RedisSettings
from app.core.db import utc_now
from app.core.redis import create_redis
from app.events.models import Event
from app.projects.models import ApiKeyScope, Project, Role
from app.tasks.models import Task, TaskStatus
from tests.factories import add_member, auth_headers, make_api_key, make_project, make_user
from tests.integration.tasks.test_scheduler import queued_task_ids


async def _owner_and_project(session: AsyncSession) -> tuple[dict[str, str], Project]:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    return auth_headers(owner), project


async def _submit(
    client: httpx.AsyncClient, project: Project, headers: dict[str, str], **body: object
) -> httpx.Response:
    return await client.post(
        f"/v1/projects/{project.id}/tasks", json={"type": "echo", **body}, headers=headers
    )


class TestSubmitTask:
    async def test_records_the_task_and_its_event_and_queues_a_job(
        self, client: httpx.AsyncClient, session: AsyncSession, app: FastAPI, redis: Redis
    ) -> None:
        headers, project = await _owner_and_project(session)

        response = await _submit(client, project, headers, input={"n": 1}, priority="high")
        await app.state.publisher.drain()

        assert response.status_code == 202
        body = response.json()
        assert body["status"] == "queued"
        assert body["input"] == {"n": 1}
        assert body["attempt"] == 0
        assert body["max_attempts"] == 3
        task = await session.get_one(Task, uuid.UUID(body["id"]))
        assert task.status == TaskStatus.queued
        kinds = await session.scalars(select(Event.kind).where(Event.subject_id == task.id))
        assert list(kinds) == ["task.created"]
        assert body["id"] in await queued_task_ids(redis, "high")

    async def test_an_unknown_type_is_a_422_problem(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers, project = await _owner_and_project(session)

        response = await client.post(
            f"/v1/projects/{project.id}/tasks", json={"type": "nope"}, headers=headers
        )

        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("/unknown-task-type")

    async def test_input_that_does_not_match_the_schema_names_the_field(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers, project = await _owner_and_project(session)

        response = await client.post(
            f"/v1/projects/{project.id}/tasks",
            json={"type": "sleep", "input": {"seconds": 99999}},
            headers=headers,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["body", "input", "seconds"]
        assert (
            await session.scalars(select(Task).where(Task.project_id == project.id))
        ).all() == []

    async def test_limits_beyond_the_caps_are_refused(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers, project = await _owner_and_project(session)
        far = (utc_now() + timedelta(days=365)).isoformat()

        responses = [
            await _submit(client, project, headers, max_attempts=1000),
            await _submit(client, project, headers, timeout_s=10**9),
            await _submit(client, project, headers, run_at=far),
            await _submit(client, project, headers, run_at="2030-01-01T00:00:00"),  # naive
            await _submit(client, project, headers, priority="urgent"),
        ]

        assert [response.status_code for response in responses] == [422] * 5

    async def test_a_delayed_task_is_not_published_before_it_is_due(
        self, client: httpx.AsyncClient, session: AsyncSession, app: FastAPI, redis: Redis
    ) -> None:
        headers, project = await _owner_and_project(session)
        later = (utc_now() + timedelta(hours=1)).isoformat()

        response = await _submit(client, project, headers, run_at=later)
        await app.state.publisher.drain()

        assert response.status_code == 202
        task = await session.get_one(Task, uuid.UUID(response.json()["id"]))
        assert task.dispatched_at is None
        assert response.json()["id"] not in await queued_task_ids(redis, "default")

    async def test_a_viewer_may_not_submit(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, project = await _owner_and_project(session)
        viewer = await make_user(session)
        await add_member(session, project, viewer, Role.viewer)

        response = await _submit(client, project, auth_headers(viewer))

        assert response.status_code == 403

    async def test_an_outsider_gets_a_404(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, project = await _owner_and_project(session)
        outsider = await make_user(session)

        response = await _submit(client, project, auth_headers(outsider))

        assert response.status_code == 404

    async def test_an_api_key_with_write_scope_submits_and_a_read_only_key_may_not(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, project = await _owner_and_project(session)
        _, writer = await make_api_key(session, project)
        _, reader = await make_api_key(session, project, scopes=[ApiKeyScope.read])

        written = await _submit(client, project, auth_headers(writer))
        refused = await _submit(client, project, auth_headers(reader))

        assert written.status_code == 202
        assert refused.status_code == 403

    async def test_without_credentials_it_is_a_401(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, project = await _owner_and_project(session)

        response = await _submit(client, project, {})

        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")


class TestIdempotencyKey:
    async def test_the_same_key_and_body_return_the_original_task(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers, project = await _owner_and_project(session)
        keyed = {**headers, "Idempotency-Key": "order-42"}

        first = await _submit(client, project, keyed, input={"a": 1})
        again = await _submit(client, project, keyed, input={"a": 1})

        assert (first.status_code, again.status_code) == (202, 200)
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["idempotency_key"] == "order-42"

    async def test_the_same_key_with_another_body_is_a_conflict(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers, project = await _owner_and_project(session)
        keyed = {**headers, "Idempotency-Key": "order-43"}

        await _submit(client, project, keyed, input={"a": 1})
        conflict = await _submit(client, project, keyed, input={"a": 2})

        assert conflict.status_code == 409
        assert conflict.json()["type"].endswith("/idempotency-key-reused")

    async def test_keys_are_scoped_to_their_project(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner = await make_user(session)
        first_project = await make_project(session, owner=owner)
        second_project = await make_project(session, owner=owner)
        keyed = {**auth_headers(owner), "Idempotency-Key": "shared"}

        first = await _submit(client, first_project, keyed)
        second = await _submit(client, second_project, keyed)

        assert (first.status_code, second.status_code) == (202, 202)
        assert first.json()["id"] != second.json()["id"]

    async def test_a_key_with_control_characters_is_refused(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers, project = await _owner_and_project(session)

        response = await _submit(client, project, {**headers, "Idempotency-Key": "a b"})

        assert response.status_code == 422


class TestBrokerOutage:
    async def test_submit_still_answers_202_and_leaves_the_task_for_the_scheduler(
        self, client: httpx.AsyncClient, session: AsyncSession, app: FastAPI
    ) -> None:
        headers, project = await _owner_and_project(session)
        publisher = app.state.publisher
        await publisher.redis.aclose()
        publisher.redis = create_redis(RedisSettings(url="redis://127.0.0.1:1/0"))

        response = await _submit(client, project, headers)
        await app.state.publisher.drain()

        assert response.status_code == 202
        task = await session.get_one(Task, uuid.UUID(response.json()["id"]), populate_existing=True)
        assert task.status == TaskStatus.queued
        assert task.dispatched_at is None


class TestReadTasks:
    async def test_get_returns_the_task(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers, project = await _owner_and_project(session)
        task_id = (await _submit(client, project, headers)).json()["id"]

        response = await client.get(f"/v1/tasks/{task_id}", headers=headers)

        assert response.status_code == 200
        assert response.json()["id"] == task_id
        assert response.json()["project_id"] == str(project.id)

    async def test_another_projects_task_and_an_unknown_id_are_both_404(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers, project = await _owner_and_project(session)
        task_id = (await _submit(client, project, headers)).json()["id"]
        outsider = auth_headers(await make_user(session))

        foreign = await client.get(f"/v1/tasks/{task_id}", headers=outsider)
        unknown = await client.get(f"/v1/tasks/{uuid.uuid4()}", headers=headers)

        assert (foreign.status_code, unknown.status_code) == (404, 404)
        assert foreign.json()["type"] == unknown.json()["type"]

    async def test_a_malformed_id_or_wait_is_a_422(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers, _ = await _owner_and_project(session)

        bad_id = await client.get("/v1/tasks/not-a-uuid", headers=headers)
        bad_wait = await client.get(f"/v1/tasks/{uuid.uuid4()}?wait=61", headers=headers)

        assert (bad_id.status_code, bad_wait.status_code) == (422, 422)

    async def test_wait_returns_at_once_for_a_finished_task(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers, project = await _owner_and_project(session)
        task_id = (await _submit(client, project, headers)).json()["id"]
        await session.execute(
            update(Task).where(Task.id == uuid.UUID(task_id)).values(status=TaskStatus.succeeded)
        )
        await session.flush()

        response = await client.get(f"/v1/tasks/{task_id}?wait=30", headers=headers)

        assert response.json()["status"] == "succeeded"

    async def test_list_filters_and_pages_newest_first(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers, project = await _owner_and_project(session)
        ids = [(await _submit(client, project, headers)).json()["id"] for _ in range(3)]
        await _submit(client, project, headers, type="sleep", input={"seconds": 1})

        first = await client.get(
            f"/v1/projects/{project.id}/tasks?type=echo&limit=2", headers=headers
        )
        second = await client.get(
            f"/v1/projects/{project.id}/tasks",
            params={"type": "echo", "limit": 2, "cursor": first.json()["next_cursor"]},
            headers=headers,
        )

        assert [item["id"] for item in first.json()["items"]] == ids[::-1][:2]
        assert [item["id"] for item in second.json()["items"]] == ids[:1]
        assert second.json()["next_cursor"] is None

    async def test_list_by_status(self, client: httpx.AsyncClient, session: AsyncSession) -> None:
        headers, project = await _owner_and_project(session)
        await _submit(client, project, headers)

        queued = await client.get(f"/v1/projects/{project.id}/tasks?status=queued", headers=headers)
        failed = await client.get(f"/v1/projects/{project.id}/tasks?status=failed", headers=headers)
        bogus = await client.get(f"/v1/projects/{project.id}/tasks?status=lost", headers=headers)

        assert len(queued.json()["items"]) == 1
        assert failed.json()["items"] == []
        assert bogus.status_code == 422

    async def test_a_bad_cursor_is_a_400_problem(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers, project = await _owner_and_project(session)

        response = await client.get(
            f"/v1/projects/{project.id}/tasks?cursor=%%%garbage", headers=headers
        )

        assert response.status_code == 400

    async def test_a_tasks_events_are_listed(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers, project = await _owner_and_project(session)
        task_id = (await _submit(client, project, headers)).json()["id"]

        response = await client.get(f"/v1/tasks/{task_id}/events", headers=headers)

        assert response.status_code == 200
        assert [event["kind"] for event in response.json()["items"]] == ["task.created"]

    async def test_task_types_are_served_with_their_schemas(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/v1/task-types")

        types = {item["name"]: item for item in response.json()["items"]}
        assert {"echo", "sleep", "cpu.primes", "fail"} <= set(types)
        assert types["sleep"]["input_schema"]["properties"]["seconds"]["maximum"] == 3600


class TestCancelTask:
    async def test_a_queued_task_is_canceled_at_once_and_a_second_cancel_is_409(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers, project = await _owner_and_project(session)
        task_id = (await _submit(client, project, headers)).json()["id"]

        canceled = await client.post(f"/v1/tasks/{task_id}/cancel", headers=headers)
        again = await client.post(f"/v1/tasks/{task_id}/cancel", headers=headers)

        assert canceled.status_code == 202
        assert canceled.json()["status"] == "canceled"
        assert again.status_code == 409

    async def test_a_running_task_is_asked_to_stop(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers, project = await _owner_and_project(session)
        task_id = (await _submit(client, project, headers)).json()["id"]
        await session.execute(
            update(Task)
            .where(Task.id == uuid.UUID(task_id))
            .values(status=TaskStatus.running, attempt=1, lease_expires_at=utc_now())
        )
        await session.flush()

        response = await client.post(f"/v1/tasks/{task_id}/cancel", headers=headers)

        assert response.status_code == 202
        assert response.json()["status"] == "running"
        assert response.json()["cancel_requested_at"] is not None

    async def test_a_viewer_may_read_but_not_cancel(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers, project = await _owner_and_project(session)
        task_id = (await _submit(client, project, headers)).json()["id"]
        viewer = await make_user(session)
        await add_member(session, project, viewer, Role.viewer)

        read = await client.get(f"/v1/tasks/{task_id}", headers=auth_headers(viewer))
        cancel = await client.post(f"/v1/tasks/{task_id}/cancel", headers=auth_headers(viewer))

        assert (read.status_code, cancel.status_code) == (200, 403)


class TestUnstorableInput:
    async def test_nan_nul_and_deep_nesting_in_input_are_422_not_500(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers, project = await _owner_and_project(session)
        deep: object = "leaf"
        for _ in range(40):
            deep = {"d": deep}
        bodies = [
            '{"type": "echo", "input": {"x": NaN}}',
            '{"type": "echo", "input": {"x": Infinity}}',
            '{"type": "echo", "input": {"x": "a\\u0000b"}}',
            '{"type": "echo\\u0000", "input": {}}',
        ]

        responses = [
            await client.post(
                f"/v1/projects/{project.id}/tasks",
                content=body,
                headers={**headers, "Content-Type": "application/json"},
            )
            for body in bodies
        ]
        responses.append(await _submit(client, project, headers, input=deep))

        assert [response.status_code for response in responses] == [422] * 5
