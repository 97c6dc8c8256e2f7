"""A client generated from the served document by openapi-python-client runs the README's
walk-through against real API, worker and scheduler processes; every answer parses into the
generated models, errors into `Problem`."""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.platform import Platform

pytestmark = pytest.mark.e2e


@pytest.fixture
def platform(isolated_platform: Platform) -> Platform:
    """On a database of its own: the users, projects and endpoints this test makes (and leaves)
    stay out of the way of the tests that share the session's database."""
    return isolated_platform


PASSWORD = "correct horse battery staple"


def _generate(document: bytes, root: Path) -> ModuleType:
    """Generate the client package `taskgate_client` under `root` and import it."""
    spec = root / "openapi.json"
    spec.write_bytes(document)
    bin_dir = Path(sys.executable).parent
    subprocess.run(  # noqa: S603 (our own generator, on our own document)
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(spec),
            "--meta",
            "none",
            "--output-path",
            str(root / "taskgate_client"),
            "--fail-on-warning",
        ],
        check=True,
        capture_output=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},  # its post-hooks run the pinned ruff
    )
    sys.path.insert(0, str(root))
    try:
        for module in [name for name in sys.modules if name.startswith("taskgate_client")]:
            del sys.modules[module]
        return importlib.import_module("taskgate_client")
    finally:
        sys.path.remove(str(root))


def _in_an_hour() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat()


class Api:
    """The generated package's operations and models, every answer checked as it comes back."""

    def __init__(self, package: ModuleType) -> None:
        self.package = package
        self.models = importlib.import_module("taskgate_client.models")
        self.types = importlib.import_module("taskgate_client.types")
        self.clients: list[Any] = []

    def client(self, base_url: str, token: str | None = None) -> Any:
        clients = importlib.import_module("taskgate_client.client")
        if token is None:
            client = clients.Client(base_url=base_url, raise_on_unexpected_status=True)
        else:
            client = clients.AuthenticatedClient(
                base_url=base_url, token=token, raise_on_unexpected_status=True
            )
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.get_async_httpx_client().aclose()

    async def call(
        self, operation: str, status: int, model: str, *args: Any, **arguments: Any
    ) -> Any:
        """`tag.operation_id` called; its answer must be `status`, parsed as `model`."""
        tag, name = operation.split(".")
        module = importlib.import_module(f"taskgate_client.api.{tag}.{name}")
        response = await module.asyncio_detailed(*args, **arguments)
        assert response.status_code == status, response.content
        expected = str if model == "str" else getattr(self.models, model)
        assert isinstance(response.parsed, expected), (type(response.parsed), response.content)
        return response.parsed


class TestGeneratedClient:
    async def test_runs_the_walk_through_and_every_answer_parses(
        self, platform: Platform, tmp_path: Path
    ) -> None:
        platform.start_worker(concurrency=2)
        async with httpx.AsyncClient(base_url=platform.base_url, timeout=60) as http:
            document = (await http.get("/openapi.json")).content
            api = Api(_generate(document, tmp_path))
            try:
                await _walk_through(api, http, platform.base_url)
            finally:
                await api.close()


async def _walk_through(api: Api, http: httpx.AsyncClient, base_url: str) -> None:
    """The README walk-through, from registering to the audit log."""
    m = api.models
    anonymous = api.client(base_url)
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"

    # Register, sign in, create a project and an API key.
    user = await api.call(
        "auth.register_user",
        201,
        "UserRead",
        client=anonymous,
        body=m.UserRegister(email=email, password=PASSWORD),
    )
    taken = await api.call(
        "auth.register_user",
        409,
        "Problem",
        client=anonymous,
        body=m.UserRegister(email=email.upper(), password=PASSWORD),
    )
    assert taken.status == 409
    tokens = await api.call(
        "auth.create_token",
        200,
        "TokenResponse",
        client=anonymous,
        body=m.TokenForm(username=email, password=PASSWORD),
    )
    owner = api.client(base_url, tokens.access_token)
    me = await api.call("users.get_me", 200, "UserRead", client=owner)
    assert me.id == user.id
    project = await api.call(
        "projects.create_project",
        201,
        "ProjectRead",
        client=owner,
        body=m.ProjectCreate(name="thumbnails"),
    )
    assert project.role == m.Role.OWNER
    created = await api.call(
        "api_keys.create_api_key",
        201,
        "ApiKeyCreated",
        project.id,
        client=owner,
        body=m.ApiKeyCreate(name="ci", scopes=[m.ApiKeyScope.READ, m.ApiKeyScope.WRITE]),
    )
    assert created.scopes == [m.ApiKeyScope.READ, m.ApiKeyScope.WRITE]
    keys = await api.call("api_keys.list_api_keys", 200, "PageApiKeyRead", project.id, client=owner)
    assert [key.id for key in keys.items] == [created.id]
    key = api.client(base_url, created.key)
    refreshed = await api.call(
        "auth.refresh_token",
        200,
        "TokenResponse",
        client=anonymous,
        body=m.RefreshRequest(refresh_token=tokens.refresh_token),
    )
    reused = await api.call(
        "auth.refresh_token",
        401,
        "Problem",
        client=anonymous,
        body=m.RefreshRequest(refresh_token=tokens.refresh_token),
    )
    assert reused.type_.endswith("/invalid-refresh-token")
    assert refreshed.access_token != tokens.access_token

    # A webhook endpoint, before the tasks whose events it receives.
    endpoint = await api.call(
        "webhooks.create_webhook",
        201,
        "WebhookWithSecret",
        project.id,
        client=owner,
        body=m.WebhookCreate(
            url="http://127.0.0.1:9/hooks/taskgate",
            events=[m.EventKind.TASK_SUCCEEDED, m.EventKind.TASK_FAILED],
        ),
    )
    assert endpoint.secret.startswith("whsec_")
    assert endpoint.events == [m.EventKind.TASK_FAILED, m.EventKind.TASK_SUCCEEDED]

    # Submit with an Idempotency-Key, replay it, reuse the key for another body (409).
    types = await api.call("tasks.list_task_types", 200, "PageTaskTypeRead", client=key)
    assert "cpu.primes" in {task_type.name for task_type in types.items}
    primes = m.TaskSubmit(
        type_="cpu.primes",
        input_=m.TaskSubmitInput.from_dict({"n": 1000}),
        priority=m.Priority.HIGH,
    )
    task = await api.call(
        "tasks.submit_task",
        202,
        "TaskRead",
        project.id,
        client=key,
        body=primes,
        idempotency_key="primes-1",
    )
    replay = await api.call(
        "tasks.submit_task",
        200,
        "TaskRead",
        project.id,
        client=key,
        body=primes,
        idempotency_key="primes-1",
    )
    assert replay.id == task.id
    conflict = await api.call(
        "tasks.submit_task",
        409,
        "Problem",
        project.id,
        client=key,
        body=m.TaskSubmit(type_="echo"),
        idempotency_key="primes-1",
    )
    assert conflict.status == 409

    # Long-poll until it is done.
    done = await api.call("tasks.get_task", 200, "TaskRead", task.id, client=key, wait=30)
    assert done.status == m.TaskStatus.SUCCEEDED
    assert done.result == {"n": 1000, "count": 168}
    events = await api.call("tasks.list_task_events", 200, "PageEventRead", task.id, client=key)
    assert "task.succeeded" in {event.kind for event in events.items}

    # A list, page by page with the cursor.
    for n in range(3):
        await api.call(
            "tasks.submit_task",
            202,
            "TaskRead",
            project.id,
            client=key,
            body=m.TaskSubmit(type_="echo", input_=m.TaskSubmitInput.from_dict({"n": n})),
        )
    first = await api.call("tasks.list_tasks", 200, "PageTaskRead", project.id, client=key, limit=3)
    assert isinstance(first.next_cursor, str)
    second = await api.call(
        "tasks.list_tasks",
        200,
        "PageTaskRead",
        project.id,
        client=key,
        limit=3,
        cursor=first.next_cursor,
    )
    assert {item.id for item in second.items} == {task.id}
    assert second.next_cursor is None

    # Cancel a delayed task; cancelling it again is a 409.
    later = await api.call(
        "tasks.submit_task",
        202,
        "TaskRead",
        project.id,
        client=key,
        body=m.TaskSubmit.from_dict(
            {"type": "sleep", "input": {"seconds": 5}, "run_at": _in_an_hour()}
        ),
    )
    canceled = await api.call("tasks.cancel_task", 202, "TaskRead", later.id, client=key)
    assert canceled.status == m.TaskStatus.CANCELED
    again = await api.call("tasks.cancel_task", 409, "Problem", later.id, client=key)
    assert again.status == 409

    # A presigned upload, confirmed; a direct one.
    photo = b"\x89PNG not really"
    announced = await api.call(
        "files.create_file",
        201,
        "FileUpload",
        project.id,
        client=key,
        body=m.FileCreate(filename="photo.png", content_type="image/png", size=len(photo)),
    )
    put = await http.put(announced.upload_url, content=photo, headers=announced.headers.to_dict())
    assert put.status_code == 200, put.text
    ready = await api.call("files.complete_file", 200, "FileRead", announced.id, client=key)
    assert ready.status == m.FileStatus.READY
    uploaded = await api.call(
        "files.upload_file",
        201,
        "FileRead",
        project.id,
        client=key,
        body=m.FileUploadForm(
            file=api.types.File(
                payload=io.BytesIO(b"a,b\n1,2\n"),
                file_name="rows.csv",
                mime_type="text/csv",
            )
        ),
    )
    assert (uploaded.content_type, uploaded.status) == ("text/csv", m.FileStatus.READY)
    files = await api.call(
        "files.list_files", 200, "PageFileRead", project.id, client=key, limit=20
    )
    assert {file.id for file in files.items} == {announced.id, uploaded.id}

    # The webhook's deliveries and the audit log.
    deliveries = await api.call(
        "webhooks.list_webhook_deliveries",
        200,
        "PageDeliveryRead",
        endpoint.id,
        client=owner,
    )
    assert {delivery.event_type for delivery in deliveries.items} == {"task.succeeded"}
    audit = await api.call(
        "events.list_events", 200, "PageEventRead", project.id, client=owner, limit=50
    )
    assert {"project.created", "project.api_key_created", "task.created"} <= {
        event.kind for event in audit.items
    }

    # 404 and 422 come back as problems; the operations routes parse too.
    missing = await api.call("tasks.get_task", 404, "Problem", uuid.uuid4(), client=key, wait=0)
    assert missing.type_.endswith("/task-not-found")
    invalid = await api.call(
        "tasks.submit_task",
        422,
        "Problem",
        project.id,
        client=key,
        body=m.TaskSubmit(type_="cpu.primes", input_=m.TaskSubmitInput.from_dict({})),
    )
    assert invalid.status == 422
    await api.call("operations.get_liveness", 200, "Liveness", client=anonymous)
    metrics = await api.call("operations.get_metrics", 200, "str", client=anonymous)
    assert "taskgate_http_requests_total" in metrics
