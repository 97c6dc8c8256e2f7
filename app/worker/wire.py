"""Celery task messages as the Redis transport stores them, built without kombu's producer.

A message is what `celery.send_task` would push: Celery's task protocol 2 (headers, and a body
of `[args, kwargs, embed]`) in kombu's Redis envelope (a JSON object whose `body` is base64),
pushed with `LPUSH` onto the list named after the queue, as a direct publish to a queue of the
same name (kombu's anonymous exchange). A stock `celery worker` consumes it and acknowledges it,
restores it when its worker dies, and sends the same task events to Flower as for any message.

What this skips: kombu's producer pool, its per-publish exchange lookup (a Redis round trip),
and the `task-sent` event. Messages are built once per job and pipelined, many per round trip.

What Flower and `celery inspect` show of a job is the publisher's to say: `shadow` (the name
shown instead of the job's, such as a task's type), `argsrepr` (the args line shown instead of
the arguments) and the Celery task `id`. `request_id`, a header of taskgate's own, is the
`X-Request-ID` of the request that caused the job; the worker logs under it. `traceparent` (and
`tracestate`), when tracing is on, are the W3C trace context of the span that enqueued the job:
Celery's OpenTelemetry instrumentation reads them as the parent of the job's span.
"""

from __future__ import annotations

import base64
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

# What `celery.utils.nodenames.anon_nodename()` gives: the `origin` header of a sender that is
# not a worker.
ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"

_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@dataclass(frozen=True, slots=True)
class Shown:
    """How Flower and `celery inspect` show a job: under `name` (the `shadow` header; the job's
    own name when None), as Celery task `id` (a new UUID when None), with the args line `args`
    (the arguments' repr when None). Never a task's input: Flower shows this to operators."""

    name: str | None = None
    id: str | None = None
    args: str | None = None


def joined(shown: Sequence[Shown | None]) -> Shown | None:
    """What a job carrying several items shows: its own id, the items' common name if they share
    one, and an args line listing their names (`3 tasks: echo, echo, sleep`)."""
    if not any(shown):
        return None
    names = [item.name if item is not None and item.name else "?" for item in shown]
    common = names[0] if len(set(names)) == 1 and names[0] != "?" else None
    return Shown(name=common, args=f"{len(names)} tasks: {', '.join(names)}")


def task_message(
    name: str,
    args: Sequence[str],
    *,
    queue: str,
    time_limit: int | None,
    task_id: str | None = None,
    shadow: str | None = None,
    argsrepr: str | None = None,
    request_id: str | None = None,
    trace: Sequence[tuple[str, str]] | None = None,
) -> bytes:
    """The bytes to `LPUSH` onto `queue` for one `name(*args)` job."""
    task_id = task_id or str(uuid.uuid4())
    body = orjson.dumps([list(args), {}, _EMBED])
    headers: dict[str, object] = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "shadow": shadow,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [time_limit, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": repr(tuple(args)) if argsrepr is None else argsrepr,
        "kwargsrepr": "{}",
        "origin": ORIGIN,
        "ignore_result": False,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
        "request_id": request_id,
    }
    if trace:
        headers.update(trace)
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return orjson.dumps(envelope)
