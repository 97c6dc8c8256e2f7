"""schemathesis over the served OpenAPI document: every operation, every check, authenticated,
with a second tenant's ids mixed into the paths (`fuzzing.py`). It must find nothing.

`make test` runs a short, seeded pass; `make fuzz` a longer one, stateful phase included
(`FUZZ_MAX_EXAMPLES`, `FUZZ_PHASES`, `FUZZ_SEED`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core.db import create_sessionmaker, transaction
from app.projects.models import Role
from tests.e2e import fuzzing
from tests.factories import access_token, auth_headers, make_user
from tests.platform import Platform

pytestmark = pytest.mark.e2e


@pytest.fixture
def platform(isolated_platform: Platform) -> Platform:
    """On a database of its own: the users, projects and endpoints this test makes (and leaves)
    stay out of the way of the tests that share the session's database."""
    return isolated_platform


REPO = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "40"))
PHASES = os.environ.get("FUZZ_PHASES", "examples,coverage,fuzzing")
SEED = int(os.environ.get("FUZZ_SEED", "20261204"))

POSITIVE_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
NEGATIVE_REJECTED = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429"]

# Valid by the document, refused by a rule no JSON Schema can state; each answer is documented.
SEMANTIC_REFUSALS = {
    # The input must match the named type's own schema (`GET /v1/task-types`), the type exist.
    "POST /v1/projects/{project_id}/tasks": ["422"],
    # The URL must resolve to a public address, checked when it is given.
    "POST /v1/projects/{project_id}/webhooks": ["422"],
    "PATCH /v1/webhooks/{endpoint_id}": ["422"],
    # A file name must not hold invisible format characters (Unicode's Cf category).
    "POST /v1/projects/{project_id}/files": ["422"],
    # An email's domain must be one mail can reach (no special-use names such as `.test`); a
    # member is added by the email of a registered user.
    "POST /v1/auth/register": ["422"],
    "POST /v1/projects/{project_id}/members": ["404", "422"],
}


def _config(document: dict[str, Any]) -> str:
    """schemathesis.toml: one worker (a deterministic order), and what each check expects
    where the defaults do not say what this API documents."""
    lines = [
        "workers = 1",
        "[checks.not_a_server_error]",
        # 503 with Retry-After is the documented answer to overload (a busy password hasher).
        'expected-statuses = ["2xx", "3xx", "4xx", "503"]',
        "[checks.negative_data_rejection]",
        # A declared size over the maximum is refused as too large, with the problem for it.
        f"expected-statuses = {json.dumps([*NEGATIVE_REJECTED, '413', '5xx'])}",
    ]
    cursor_lists = sorted(
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if any(parameter["name"] == "cursor" for parameter in operation.get("parameters", []))
    )
    # A cursor is opaque: a string of the documented length may still not be one (400).
    refusals = {name: ["400"] for name in cursor_lists}
    for name, statuses in SEMANTIC_REFUSALS.items():
        refusals.setdefault(name, []).extend(statuses)
    for name, statuses in refusals.items():
        lines += [
            "[[operations]]",
            f"include-name = {json.dumps(name)}",
            "[operations.checks.positive_data_acceptance]",
            f"expected-statuses = {json.dumps([*POSITIVE_ACCEPTED, *statuses])}",
        ]
    return "\n".join(lines) + "\n"


async def _tenant(
    client: httpx.AsyncClient, platform: Platform
) -> tuple[str, dict[str, list[str]]]:
    """An owner's token and the ids of one of everything in a project of theirs, made over HTTP."""
    async with transaction(create_sessionmaker(platform.engine)) as session:
        owner = await make_user(session)
        viewer = await make_user(session)
    token = access_token(owner)
    headers = auth_headers(token)

    async def post(path: str, **kwargs: Any) -> dict[str, Any]:
        response = await client.post(path, headers=headers, **kwargs)
        assert response.is_success, response.text
        body: dict[str, Any] = response.json()
        return body

    project = (await post("/v1/projects", json={"name": "fuzzed"}))["id"]
    base = f"/v1/projects/{project}"
    await post(f"{base}/members", json={"email": viewer.email, "role": Role.viewer})
    key = (await post(f"{base}/api-keys", json={"name": "fuzz"}))["id"]
    endpoint = (
        await post(f"{base}/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["*"]})
    )["id"]
    task = (await post(f"{base}/tasks", json={"type": "echo"}))["id"]
    await post(f"/v1/tasks/{task}/cancel")  # finished: a long-poll of it answers at once
    announced = await post(
        f"{base}/files", json={"filename": "a.csv", "content_type": "text/csv", "size": 3}
    )
    uploaded = await post(
        f"{base}/files:upload", files={"file": ("b.csv", b"a,b\n1,2\n", "text/csv")}
    )
    deliveries = await client.get(f"/v1/webhooks/{endpoint}/deliveries", headers=headers)
    assert deliveries.status_code == 200, deliveries.text
    return token, {
        "project_id": [project],
        "user_id": [str(owner.id), str(viewer.id)],
        "key_id": [key],
        "endpoint_id": [endpoint],
        "task_id": [task],
        "file_id": [announced["id"], uploaded["id"]],
        "delivery_id": [item["id"] for item in deliveries.json()["items"]],
    }


class TestSchemathesis:
    async def test_finds_nothing_across_every_operation_and_check(
        self, platform: Platform, tmp_path: Path
    ) -> None:
        async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as client:
            token, own = await _tenant(client, platform)
            _, other = await _tenant(client, platform)
            disposable = [
                (
                    await client.post(
                        "/v1/projects", json={"name": f"spare {n}"}, headers=auth_headers(token)
                    )
                ).json()["id"]
                for n in range(3)
            ]
            document = (await client.get("/openapi.json")).json()
        config = tmp_path / "schemathesis.toml"
        config.write_text(_config(document))
        ids = {"own": own, "other": other, "disposable_projects": disposable}

        log = tmp_path / "schemathesis.log"
        with log.open("w") as output:
            run = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "schemathesis"),
                "--config-file",
                str(config),
                "--no-color",
                "run",
                f"{platform.base_url}/openapi.json",
                "--checks=all",
                f"--header=Authorization: Bearer {token}",
                f"--seed={SEED}",
                f"--max-examples={MAX_EXAMPLES}",
                f"--phases={PHASES}",
                "--request-timeout=30",
                "--suppress-health-check=all",
                cwd=REPO,
                env={
                    **os.environ,
                    "SCHEMATHESIS_HOOKS": fuzzing.__name__,
                    fuzzing.IDS_VARIABLE: json.dumps(ids),
                },
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
            )
            returncode = await run.wait()

        assert returncode == 0, log.read_text()[-30_000:]
