"""`core.db.detached`: ORM instances built from values without the per-attribute events."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

from sqlalchemy import inspect

from app.core.db import detached, utc_now
from app.events.models import ActorType, Event


def _values() -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "project_id": uuid.uuid4(),
        "kind": "task.created",
        "actor_type": ActorType.system,
        "actor_id": None,
        "subject_id": uuid.uuid4(),
        "data": {"attempt": 1},
        "request_id": "r-1",
        "at": utc_now(),
    }


class TestDetached:
    def test_the_instance_reads_back_every_value_and_is_transient(self) -> None:
        values = _values()

        event = detached(Event, values)

        assert {key: getattr(event, key) for key in values} == values
        assert inspect(event).transient

    def test_it_works_in_a_process_that_has_built_no_model_yet(self) -> None:
        # The ORM configures its mappers when the first instance is constructed; a process whose
        # first instance is a detached one (a worker leasing its first task) must read it too.
        script = textwrap.dedent(
            """
            import uuid
            import app.models
            from app.core.db import detached
            from app.tasks.models import Task
            task = detached(Task, {"id": uuid.UUID(int=7), "type": "echo"})
            print(task.id, task.type)
            """
        )

        result = subprocess.run(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
        )

        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [str(uuid.UUID(int=7)), "echo"]
