"""What a `tasks.execute` message says of its task: the type as Celery's `shadow` name, the id
Flower finds it by, an args line without the input, and the request id of the submit."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.redis import create_redis
from app.projects.models import Project
from app.tasks.models import Priority, TaskStatus
from app.worker.enqueue import Message, Publisher
from app.worker.names import Job, Queue
from app.worker.scheduler import tick
from app.worker.wire import Shown
from tests.factories import auth_headers, make_project, make_user
from tests.integration.tasks.conftest import make_task


async def _messages(redis: Redis, queue: str) -> list[dict[str, Any]]:
    """Each message's headers, with its args, oldest first."""
    found = []
    for raw in reversed(await redis.lrange(queue, 0, -1)):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        found.append({**message["headers"], "args": args})
    return found


def _of(messages: list[dict[str, Any]], task_id: str) -> dict[str, Any]:
    [message] = [message for message in messages if task_id in message["args"]]
    return message


class TestSubmittedTask:
    async def test_its_message_names_the_type_and_attempt_and_carries_the_request_id(
        self, client: httpx.AsyncClient, session: AsyncSession, app: FastAPI, redis: Redis
    ) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
        marker = f"input-{uuid.uuid4().hex}"

        response = await client.post(
            f"/v1/projects/{project.id}/tasks",
            json={"type": "echo", "input": {"note": marker}, "priority": "high"},
            headers={**auth_headers(owner), "X-Request-ID": "submit-msg-1"},
        )
        await app.state.publisher.drain()

        assert response.status_code == 202, response.text
        task_id = response.json()["id"]
        message = _of(await _messages(redis, "high"), task_id)
        assert message["task"] == "tasks.execute"
        assert message["shadow"] == "echo"
        assert message["id"] == message["root_id"] == f"{task_id}-1"
        assert message["argsrepr"] == f"type=echo project={project.id} attempt=1"
        assert message["request_id"] == "submit-msg-1"
        assert marker not in json.dumps(message)


class TestDispatchedByTheScheduler:
    async def test_a_retry_s_message_has_the_next_attempt_s_id_and_the_row_s_type_and_request_id(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        publisher: Publisher,
        redis: Redis,
        settings: Settings,
    ) -> None:
        task = await make_task(
            db,
            project,
            type="fail",
            attempt=1,
            priority=Priority.low,
            status=TaskStatus.queued,
            request_id="submitted-as-1",
        )

        await tick(db, publisher, redis, settings)

        message = _of(await _messages(redis, "low"), str(task.id))
        assert (message["shadow"], message["id"]) == ("fail", f"{task.id}-2")
        assert message["argsrepr"] == f"type=fail project={project.id} attempt=2"
        assert message["request_id"] == "submitted-as-1"  # the row's: no request around it


@pytest.fixture
async def joining(settings: Settings, redis: Redis) -> AsyncIterator[Publisher]:
    """A publisher that joins up to 3 tasks per job once their queue holds 1 message."""
    await redis.delete(Queue.low.value)
    publisher = Publisher(create_redis(settings.redis), breaker_s=5, batch=3, batch_backlog=1)
    yield publisher
    await publisher.close()
    await redis.delete(Queue.low.value)


def _task(task_id: str, type_: str, request_id: str | None) -> Message:
    shown = Shown(name=type_, id=f"{task_id}-1", args=f"type={type_} attempt=1")
    return Message(Job.execute_task, (task_id,), Queue.low, 60, shown, request_id)


class TestJoinedJobs:
    async def test_a_job_of_several_tasks_keeps_its_own_id_and_lists_their_types(
        self, joining: Publisher, redis: Redis
    ) -> None:
        await joining.send([_task("a", "echo", "r1")])  # the queue now holds a message

        await joining.send([_task("b", "echo", "r1"), _task("c", "sleep", "r2")])

        first, joined = await _messages(redis, Queue.low.value)
        assert (first["id"], first["shadow"], first["request_id"]) == ("a-1", "echo", "r1")
        assert joined["args"] == ["b", "c"]
        assert joined["argsrepr"] == "2 tasks: echo, sleep"
        assert joined["shadow"] is None  # shown as `tasks.execute`
        assert str(uuid.UUID(joined["id"])) == joined["id"]
        assert joined["request_id"] is None  # the tasks' ids differ; each has its own on its row

    async def test_tasks_of_one_type_and_request_are_shown_by_them(
        self, joining: Publisher, redis: Redis
    ) -> None:
        await joining.send([_task("a", "echo", "r1")])

        await joining.send([_task("b", "echo", "r1"), _task("c", "echo", "r1")])

        _first, joined = await _messages(redis, Queue.low.value)
        assert (joined["shadow"], joined["request_id"]) == ("echo", "r1")
        assert joined["argsrepr"] == "2 tasks: echo, echo"


class TestOtherJobs:
    async def test_a_job_without_a_label_is_shown_as_itself(
        self, publisher: Publisher, redis: Redis
    ) -> None:
        await redis.delete(Queue.low.value)

        await publisher.send([Message(Job.digest_file, ("f1",), Queue.low, None, None, "r9")])

        [sent] = await _messages(redis, Queue.low.value)
        await redis.delete(Queue.low.value)
        assert (sent["task"], sent["shadow"], sent["request_id"]) == ("files.digest", None, "r9")
        assert sent["argsrepr"] == "('f1',)"
