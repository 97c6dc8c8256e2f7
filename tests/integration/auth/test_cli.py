"""`taskgate users create`, `projects create`, `keys create`: bootstrapping without HTTP;
`taskgate users deactivate`.

The commands commit for real (to this session's database), like an operator's would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner, Result

from app.auth.models import User
from app.cli import cli
from app.core.config import Settings, get_settings
from app.events.models import Event
from tests.factories import auth_headers


@pytest.fixture
def operator_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TASKGATE_ENV", "test")
    monkeypatch.setenv("TASKGATE_DATABASE__URL", settings.database.url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def _taskgate(*args: str, stdin: str | None = None) -> Result:
    # In a thread: each command runs its own event loop (asyncio.run).
    def invoke() -> Result:
        return CliRunner().invoke(cli, list(args), input=stdin)

    return await asyncio.to_thread(invoke)


@pytest.mark.usefixtures("operator_env")
class TestBootstrap:
    async def test_user_project_and_key_from_the_command_line(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        email = f"Operator-{uuid.uuid4().hex[:8]}@Example.com"

        user = await _taskgate("users", "create", email, "--password-stdin", stdin="long enough\n")
        project = await _taskgate("projects", "create", "bootstrap", "--owner", email.lower())
        key = await _taskgate(
            "keys", "create", "--project", project.stdout.strip(), "--name", "ci", "--scope", "read"
        )

        assert (user.exit_code, project.exit_code, key.exit_code) == (0, 0, 0), (
            user.output + project.output + key.output
        )
        stored = await session.scalar(select(User).where(User.id == uuid.UUID(user.stdout.strip())))
        assert stored is not None
        assert stored.email == email.lower()
        secret = key.stdout.strip()
        assert secret.startswith("tg_")
        response = await client.get(
            f"/v1/projects/{project.stdout.strip()}", headers=auth_headers(secret)
        )
        assert response.status_code == 200
        assert response.json()["role"] == "viewer"
        registered = await session.scalar(select(Event).where(Event.subject_id == stored.id))
        assert registered is not None
        assert registered.actor_type == "system"

    async def test_an_unknown_owner_fails_with_a_message(self) -> None:
        result = await _taskgate("projects", "create", "x", "--owner", "nobody@example.com")

        assert result.exit_code == 1
        assert "No user is registered as nobody@example.com" in result.stderr

    async def test_a_short_password_is_refused(self) -> None:
        result = await _taskgate(
            "users", "create", "short@example.com", "--password-stdin", stdin="short\n"
        )

        assert result.exit_code == 2
        assert "password" in result.stderr

    async def test_a_key_for_an_unknown_project_fails(self) -> None:
        result = await _taskgate("keys", "create", "--project", str(uuid.uuid4()), "--name", "ci")

        assert result.exit_code == 1
        assert "Project not found" in result.stderr

    async def test_a_user_is_deactivated_from_the_command_line(self, session: AsyncSession) -> None:
        email = f"leaving-{uuid.uuid4().hex[:8]}@example.com"
        created = await _taskgate(
            "users", "create", email, "--password-stdin", stdin="long enough\n"
        )
        user_id = uuid.UUID(created.stdout.strip())

        result = await _taskgate("users", "deactivate", email)
        again = await _taskgate("users", "deactivate", email)

        assert (result.exit_code, again.exit_code) == (0, 0), result.output + again.output
        assert result.stdout.strip() == str(user_id)
        stored = await session.get_one(User, user_id, populate_existing=True)
        assert stored.is_active is False
        kinds = await session.scalars(select(Event.kind).where(Event.subject_id == user_id))
        assert sorted(kinds) == ["user.deactivated", "user.registered"]

    async def test_deactivating_an_unknown_user_fails_with_a_message(self) -> None:
        result = await _taskgate("users", "deactivate", "nobody@example.com")

        assert result.exit_code == 1
        assert "No user is registered as nobody@example.com" in result.stderr
