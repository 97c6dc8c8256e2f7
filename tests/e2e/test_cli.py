"""The CLI's API commands end to end: `taskgate …` run as a process against real API, worker and
scheduler processes (one platform for the module), with its output and exit code checked."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery
from sqlalchemy.ext.asyncio import AsyncEngine

import app
from app.core.db import create_sessionmaker, transaction
from app.projects.models import ApiKeyScope
from tests.factories import access_token, make_api_key, make_project, make_user
from tests.platform import FAST_SETTINGS, Platform
from tests.support import ProcessGroup, free_port

pytestmark = pytest.mark.e2e

MISSING = "00000000-0000-4000-8000-000000000000"
ERROR_LINE = re.compile(r"^error: .+ \(request id [\w.:-]+\)$", re.MULTILINE)


@dataclass
class Live:
    platform: Platform
    viewer_key: str
    owner_token: str

    @property
    def env(self) -> dict[str, str]:
        """What a user of the platform's project sets."""
        return {
            "TASKGATE_URL": self.platform.base_url,
            "TASKGATE_API_KEY": self.platform.api_key,
            "TASKGATE_PROJECT": str(self.platform.project_id),
        }

    def api(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.platform.api_key}"}
        return httpx.Client(base_url=self.platform.base_url, headers=headers, timeout=30)


def taskgate(
    *args: str, env: Mapping[str, str] | None = None, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with nothing of this process's environment but PATH (and a HOME of its own)."""
    home = home or Path("/nonexistent")
    return subprocess.run(  # noqa: S603 (fixed argv)
        [sys.executable, "-m", "app.cli", *args],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def parsed(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
async def live(
    process_env: dict[str, str],
    celery_control: Celery,
    engine: AsyncEngine,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Live]:
    logs = tmp_path_factory.mktemp("cli")
    processes = ProcessGroup()
    platform = Platform(
        processes=processes,
        env={**process_env, **FAST_SETTINGS, "TASKGATE_METRICS__DIR": str(logs / "metrics")},
        logs=logs,
        celery=celery_control,
        engine=engine,
    )
    try:
        async with transaction(create_sessionmaker(engine)) as session:
            owner = await make_user(session)
            platform.project = await make_project(session, owner=owner)
            _, platform.api_key = await make_api_key(session, platform.project)
            _, viewer_key = await make_api_key(session, platform.project, scopes=[ApiKeyScope.read])
        platform.start_api()
        platform.start_scheduler()
        platform.start_worker(concurrency=2)
        yield Live(platform, viewer_key=viewer_key, owner_token=access_token(owner))
    finally:
        processes.stop_all()


def _submit(live: Live, type_: str, input_: dict[str, Any]) -> str:
    task = parsed(taskgate("tasks", "submit", type_, "--input", json.dumps(input_), env=live.env))
    task_id: str = task["id"]
    return task_id


def _finished_echo(live: Live) -> str:
    task_id = _submit(live, "echo", {"n": 1})
    assert parsed(taskgate("tasks", "wait", task_id, "-o", "json", env=live.env))["status"] == (
        "succeeded"
    )
    return task_id


class TestTasks:
    def test_wait_follows_a_task_to_success_and_get_shows_it_as_json_and_table(
        self, live: Live
    ) -> None:
        task_id = _submit(live, "echo", {"hello": "cli"})

        waited = taskgate("tasks", "wait", task_id, "--output", "json", env=live.env)
        got = parsed(taskgate("tasks", "get", task_id, "-o", "json", env=live.env))
        table = taskgate("tasks", "get", task_id, env=live.env)

        assert waited.returncode == 0, waited.stderr
        assert json.loads(waited.stdout)["result"] == {"hello": "cli"}
        assert f"task {task_id} succeeded" in waited.stderr
        assert (got["id"], got["status"], got["result"]) == (task_id, "succeeded", {"hello": "cli"})
        assert table.returncode == 0, table.stderr
        assert re.search(rf"^\s*id\s+{task_id}\s*$", table.stdout, re.MULTILINE)
        assert re.search(r"^\s*status\s+succeeded\s*$", table.stdout, re.MULTILINE)

    def test_wait_exits_1_with_the_task_when_it_fails(self, live: Live) -> None:
        task_id = _submit(live, "fail", {"retryable": False, "message": "no"})

        result = taskgate("tasks", "wait", task_id, "-o", "json", env=live.env)

        assert result.returncode == 1
        assert json.loads(result.stdout)["error"] == {"type": "fail", "message": "no"}

    def test_wait_exits_4_at_its_timeout_and_cancel_ends_the_queued_task(self, live: Live) -> None:
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        with live.api() as api:
            submitted = api.post(
                f"/v1/projects/{live.platform.project_id}/tasks",
                json={"type": "echo", "input": {}, "run_at": later},
            )
        assert submitted.status_code == 202, submitted.text
        task_id = submitted.json()["id"]

        waited = taskgate("tasks", "wait", task_id, "--timeout", "1", "-o", "json", env=live.env)
        canceled = taskgate("tasks", "cancel", task_id, "-o", "json", env=live.env)

        assert waited.returncode == 4, waited.stderr
        assert json.loads(waited.stdout)["status"] == "queued"
        assert parsed(canceled)["status"] == "canceled"

    def test_list_filters_by_status_and_type_and_pages(self, live: Live) -> None:
        first, second = _finished_echo(live), _finished_echo(live)

        echoes = parsed(
            taskgate(
                "tasks",
                "list",
                "--type",
                "echo",
                "--status",
                "succeeded",
                "-o",
                "json",
                env=live.env,
            )
        )
        page = parsed(taskgate("tasks", "list", "--limit", "1", "-o", "json", env=live.env))
        after = parsed(
            taskgate(
                "tasks",
                "list",
                "--limit",
                "1",
                "--cursor",
                page["next_cursor"],
                "-o",
                "json",
                env=live.env,
            )
        )
        every = parsed(
            taskgate("tasks", "list", "--limit", "1", "--all", "-o", "json", env=live.env)
        )
        table = taskgate("tasks", "list", "--type", "echo", env=live.env)

        assert {task["type"] for task in echoes["items"]} == {"echo"}
        assert {task["status"] for task in echoes["items"]} == {"succeeded"}
        assert [task["id"] for task in echoes["items"][:2]] == [second, first]
        assert [task["id"] for task in page["items"] + after["items"]] == [second, first]
        assert every["next_cursor"] is None
        assert [task["id"] for task in every["items"][:2]] == [second, first]
        assert table.returncode == 0, table.stderr
        assert re.search(rf"^\s*{second}\s+echo\s+succeeded\s+1/\d+\s", table.stdout, re.MULTILINE)
        assert table.stdout.split()[:3] == ["ID", "TYPE", "STATUS"]

    def test_events_lists_the_tasks_lifecycle(self, live: Live) -> None:
        task_id = _finished_echo(live)

        events = parsed(taskgate("tasks", "events", task_id, "-o", "json", env=live.env))
        table = taskgate("tasks", "events", task_id, env=live.env)

        assert [event["kind"] for event in events["items"]] == [
            "task.succeeded",
            "task.started",
            "task.created",
        ]
        assert table.returncode == 0, table.stderr
        assert "task.succeeded" in table.stdout

    def test_a_viewer_key_cannot_cancel(self, live: Live) -> None:
        task_id = _finished_echo(live)

        result = taskgate(
            "tasks", "cancel", task_id, env={**live.env, "TASKGATE_API_KEY": live.viewer_key}
        )

        assert result.returncode == 1
        assert ERROR_LINE.search(result.stderr), result.stderr
        assert "Your role in this project does not allow this" in result.stderr


class TestFiles:
    def test_upload_list_and_download_to_a_path_and_stdout(
        self, live: Live, tmp_path: Path
    ) -> None:
        data = os.urandom(700_000)
        source = tmp_path / "photo.bin"
        source.write_bytes(data)

        uploaded = parsed(taskgate("files", "upload", str(source), "-o", "json", env=live.env))
        listed = parsed(taskgate("files", "list", "--status", "ready", "-o", "json", env=live.env))
        table = taskgate("files", "list", env=live.env)
        to_path = taskgate("files", "download", uploaded["id"], str(tmp_path / "out"), env=live.env)
        to_stdout = subprocess.run(  # noqa: S603 (fixed argv)
            [sys.executable, "-m", "app.cli", "files", "download", uploaded["id"], "-"],
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **live.env},
            capture_output=True,
            timeout=120,
            check=False,
        )

        assert (uploaded["filename"], uploaded["size"], uploaded["status"]) == (
            "photo.bin",
            len(data),
            "ready",
        )
        assert uploaded["id"] in [file["id"] for file in listed["items"]]
        assert re.search(rf"^\s*{uploaded['id']}\s+photo\.bin\s", table.stdout, re.MULTILINE)
        assert to_path.returncode == 0, to_path.stderr
        assert (tmp_path / "out").read_bytes() == data
        assert to_stdout.returncode == 0, to_stdout.stderr
        assert to_stdout.stdout == data

    def test_downloading_an_unknown_file_is_an_api_error(self, live: Live, tmp_path: Path) -> None:
        result = taskgate("files", "download", MISSING, str(tmp_path / "out"), env=live.env)

        assert result.returncode == 1
        assert ERROR_LINE.search(result.stderr), result.stderr
        assert not (tmp_path / "out").exists()


class TestWebhooks:
    def test_list_and_deliveries_of_an_endpoint(self, live: Live) -> None:
        receiver = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens: deliveries retry
        with live.api(live.owner_token) as api:
            endpoint = api.post(
                f"/v1/projects/{live.platform.project_id}/webhooks",
                json={"url": receiver, "events": ["task.failed"], "description": "cli test"},
            ).json()
        failed = _submit(live, "fail", {"retryable": False, "message": "for the hook"})
        assert taskgate("tasks", "wait", failed, env=live.env).returncode == 1
        admin = {**live.env, "TASKGATE_API_KEY": live.owner_token}

        endpoints = parsed(taskgate("webhooks", "list", "-o", "json", env=admin))
        table = taskgate("webhooks", "list", env=admin)
        deliveries = parsed(
            taskgate("webhooks", "deliveries", endpoint["id"], "-o", "json", env=admin)
        )
        none_succeeded = parsed(
            taskgate(
                "webhooks",
                "deliveries",
                endpoint["id"],
                "--status",
                "succeeded",
                "-o",
                "json",
                env=admin,
            )
        )
        as_member = taskgate("webhooks", "list", env=live.env)

        assert endpoint["id"] in [item["id"] for item in endpoints["items"]]
        assert receiver in table.stdout
        assert [item["event_type"] for item in deliveries["items"]] == ["task.failed"]
        assert none_succeeded["items"] == []
        assert as_member.returncode == 1
        assert ERROR_LINE.search(as_member.stderr), as_member.stderr


class TestConfiguration:
    def _profiles(self, home: Path, text: str) -> None:
        path = home / "config" / "taskgate" / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def _profile(self, name: str, url: str, api_key: str, project: object) -> str:
        return f'[profiles.{name}]\nurl = "{url}"\napi_key = "{api_key}"\nproject = "{project}"\n'

    def test_the_default_profile_connects_without_flags_or_variables(
        self, live: Live, tmp_path: Path
    ) -> None:
        platform = live.platform
        self._profiles(
            tmp_path,
            self._profile("default", platform.base_url, platform.api_key, platform.project_id),
        )

        result = taskgate("tasks", "list", "--limit", "1", "-o", "json", home=tmp_path)

        assert "items" in parsed(result)

    def test_a_named_profile_is_picked_by_flag_or_variable(
        self, live: Live, tmp_path: Path
    ) -> None:
        platform = live.platform
        self._profiles(
            tmp_path,
            self._profile("viewer", platform.base_url, live.viewer_key, platform.project_id),
        )
        task_id = _finished_echo(live)

        by_flag = taskgate("tasks", "cancel", task_id, "--profile", "viewer", home=tmp_path)
        by_variable = taskgate(
            "tasks", "get", task_id, "-o", "json", env={"TASKGATE_PROFILE": "viewer"}, home=tmp_path
        )
        absent = taskgate("tasks", "get", task_id, "--profile", "nope", home=tmp_path)

        assert by_flag.returncode == 1  # the viewer key's role, so it was the profile's key
        assert "does not allow" in by_flag.stderr
        assert parsed(by_variable)["id"] == task_id
        assert absent.returncode == 2
        assert "[profiles.nope]" in absent.stderr

    def test_variables_override_the_profile_and_flags_override_variables(
        self, live: Live, tmp_path: Path
    ) -> None:
        platform = live.platform
        self._profiles(
            tmp_path,
            self._profile("default", platform.base_url, platform.api_key, platform.project_id),
        )
        closed = f"http://127.0.0.1:{free_port()}"

        by_variable = taskgate("tasks", "list", env={"TASKGATE_URL": closed}, home=tmp_path)
        by_flag = taskgate(
            "tasks",
            "list",
            "--url",
            platform.base_url,
            "-o",
            "json",
            env={"TASKGATE_URL": closed},
            home=tmp_path,
        )

        assert by_variable.returncode == 3
        assert f"cannot reach {closed}" in by_variable.stderr
        assert "items" in parsed(by_flag)

    def test_a_profile_with_an_unknown_key_is_a_usage_error(self, tmp_path: Path) -> None:
        self._profiles(tmp_path, '[profiles.default]\nurl = "http://127.0.0.1:1"\ntoken = "x"\n')

        result = taskgate("tasks", "get", MISSING, home=tmp_path)

        assert result.returncode == 2
        assert "profiles.default.token is not a setting" in result.stderr


class TestExitCodes:
    def test_usage_errors_exit_2(self, live: Live) -> None:
        unknown_option = taskgate("tasks", "list", "--colour", env=live.env)
        not_a_uuid = taskgate("tasks", "get", "nope", env=live.env)
        bad_choice = taskgate("tasks", "list", "--status", "done", env=live.env)
        no_key = taskgate("tasks", "get", MISSING, env={"TASKGATE_URL": live.platform.base_url})

        assert [
            unknown_option.returncode,
            not_a_uuid.returncode,
            bad_choice.returncode,
            no_key.returncode,
        ] == [2, 2, 2, 2]
        assert "no API key" in no_key.stderr

    def test_an_unknown_task_is_an_api_error_naming_the_request(self, live: Live) -> None:
        result = taskgate("tasks", "get", MISSING, env=live.env)

        assert result.returncode == 1
        assert result.stdout == ""
        assert ERROR_LINE.search(result.stderr), result.stderr
        assert result.stderr.startswith("error: Task not found")

    def test_a_closed_port_is_a_network_error(self, live: Live) -> None:
        closed = f"http://127.0.0.1:{free_port()}"

        result = taskgate("tasks", "get", MISSING, env={**live.env, "TASKGATE_URL": closed})

        assert result.returncode == 3
        assert result.stderr.startswith(f"error: cannot reach {closed}")


class TestVersionAndCompletion:
    def test_version_prints_the_package_version(self) -> None:
        result = taskgate("--version")

        assert (result.returncode, result.stdout) == (0, f"taskgate {app.__version__}\n")

    @pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
    def test_completion_prints_the_shells_script(self, shell: str) -> None:
        result = taskgate("completion", shell)

        assert result.returncode == 0, result.stderr
        assert f"_TASKGATE_COMPLETE=complete_{shell}" in result.stdout

    def test_the_script_completes_subcommands(self) -> None:
        result = taskgate(
            env={
                "_TASKGATE_COMPLETE": "complete_bash",
                "COMP_WORDS": "taskgate tasks ca",
                "COMP_CWORD": "2",
            }
        )

        assert (result.returncode, result.stdout.split()) == (0, ["cancel"])
