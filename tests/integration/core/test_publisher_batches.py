"""The publisher joins the tasks of a backed-up queue into jobs of several (`tasks.batch`):
while the queue is short, a job per task; other jobs are never joined."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from app.core.config import Settings
from app.core.redis import create_redis
from app.worker.enqueue import Message, Publisher
from app.worker.names import Job, Queue

QUEUE = Queue.low


async def _jobs(redis: Redis) -> list[tuple[str, list[str], int | None]]:
    """(job name, args, time limit) of each message on the queue, oldest first."""
    jobs = []
    for raw in reversed(await redis.lrange(QUEUE.value, 0, -1)):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        headers = message["headers"]
        jobs.append((headers["task"], args, headers["timelimit"][0]))
    return jobs


@pytest.fixture
async def empty_queue(redis: Redis) -> AsyncIterator[None]:
    await redis.delete(QUEUE.value)
    yield
    await redis.delete(QUEUE.value)


def _tasks(*ids: str, limit: int | None = 60) -> list[Message]:
    return [Message(Job.execute_task, (task_id,), QUEUE, limit) for task_id in ids]


@pytest.fixture
async def batching(settings: Settings) -> AsyncIterator[Publisher]:
    """A publisher that joins up to 3 tasks per job once their queue holds 2 messages."""
    publisher = Publisher(create_redis(settings.redis), breaker_s=5, batch=3, batch_backlog=2)
    yield publisher
    await publisher.close()


@pytest.mark.usefixtures("empty_queue")
async def test_a_backed_up_queue_gets_several_tasks_per_job(
    batching: Publisher, redis: Redis
) -> None:
    publisher = batching
    assert await publisher.send(_tasks("a", "b")) == []  # short queue: a job each
    webhook = Message(Job.deliver_webhook, ("d1",), QUEUE, 40)
    backlog = [*_tasks("c", "d"), *_tasks("e", limit=90), webhook, *_tasks("f", "g", "h")]
    assert await publisher.send(backlog) == []

    assert await _jobs(redis) == [
        ("tasks.execute", ["a"], 60),
        ("tasks.execute", ["b"], 60),
        ("tasks.execute", ["c", "d", "e"], 90),  # the longest time limit of the three
        ("webhooks.deliver", ["d1"], 40),
        ("tasks.execute", ["f", "g", "h"], 60),
    ]
    assert publisher.sent == 9  # messages asked for, however they were joined


@pytest.mark.usefixtures("empty_queue")
async def test_with_batch_1_every_task_is_a_job_of_its_own(
    batching: Publisher, redis: Redis
) -> None:
    batching.batch = 1
    for _ in range(2):
        assert await batching.send(_tasks("a", "b", "c")) == []

    assert [args for _, args, _ in await _jobs(redis)] == [["a"], ["b"], ["c"]] * 2
