"""No password, token, API key or webhook secret ever reaches a log line, even at DEBUG."""

from __future__ import annotations

import secrets

import httpx
import pytest

from tests.logs import JsonLogs


def _secret_parts(value: str) -> list[str]:
    """The secret and the parts of it that are secret on their own: a JWT's signature, the key
    material after a `tg_`/`whsec_` prefix."""
    parts = [value]
    if value.count(".") == 2:  # a JWT: its signature alone would let no one in, but is its own
        parts.append(value.rsplit(".", 1)[1])
    for prefix in ("tg_", "whsec_"):
        if value.startswith(prefix):
            parts.append(value.removeprefix(prefix))
    return parts


async def test_no_secret_of_any_flow_reaches_the_logs(
    json_logs: JsonLogs, client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
) -> None:
    # `json_logs` first: the database connections of the test are made while DEBUG is on.
    email = f"secret-{secrets.token_hex(4)}@example.com"
    password = f"pw-{secrets.token_urlsafe(18)}"
    wrong_password = f"wrong-{secrets.token_urlsafe(18)}"
    seen: list[str] = [password, wrong_password]

    registered = await client.post("/v1/auth/register", json={"email": email, "password": password})
    refused = await client.post(
        "/v1/auth/token", data={"username": email, "password": wrong_password}
    )
    signed_in = await client.post("/v1/auth/token", data={"username": email, "password": password})
    first = signed_in.json()
    refreshed = await client.post(
        "/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    second = refreshed.json()
    replayed = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    seen += [first["access_token"], first["refresh_token"]]
    seen += [second["access_token"], second["refresh_token"]]
    user = {"Authorization": f"Bearer {second['access_token']}"}
    me = await client.get("/v1/users/me", headers=user)

    created_project = await client.post("/v1/projects", json={"name": "secrets"}, headers=user)
    project = created_project.json()
    created_key = await client.post(
        f"/v1/projects/{project['id']}/api-keys", json={"name": "ci"}, headers=user
    )
    api_key = created_key.json()["key"]
    seen.append(api_key)
    key = {"Authorization": f"Bearer {api_key}"}
    used_key = await client.get(f"/v1/projects/{project['id']}", headers=key)
    submitted = await client.post(
        f"/v1/projects/{project['id']}/tasks", json={"type": "echo"}, headers=key
    )
    forged_key = f"tg_{secrets.token_urlsafe(32)}"
    seen.append(forged_key)
    refused_key = await client.get(
        f"/v1/projects/{project['id']}", headers={"Authorization": f"Bearer {forged_key}"}
    )

    hook = await client.post(
        f"/v1/projects/{project['id']}/webhooks",
        json={"url": "https://hooks.example.com/taskgate", "events": ["task.succeeded"]},
        headers=user,
    )
    seen.append(hook.json()["secret"])
    rotated = await client.post(f"/v1/webhooks/{hook.json()['id']}/rotate-secret", headers=user)
    seen.append(rotated.json()["secret"])
    listed = await client.get(f"/v1/projects/{project['id']}/webhooks", headers=user)

    statuses = [
        registered.status_code,
        refused.status_code,
        signed_in.status_code,
        refreshed.status_code,
        replayed.status_code,
        me.status_code,
        created_project.status_code,
        created_key.status_code,
        used_key.status_code,
        submitted.status_code,
        refused_key.status_code,
        hook.status_code,
        rotated.status_code,
        listed.status_code,
    ]
    assert statuses == [201, 401, 200, 200, 401, 200, 201, 201, 200, 202, 401, 201, 200, 200]
    output = capfd.readouterr()
    captured = "\n".join([json_logs.text, output.out, output.err])
    # Each request's access line was captured, and DEBUG lines with them.
    assert len(json_logs.lines_of("taskgate.access")) == len(statuses)
    assert any(entry["level"] == "debug" for entry in json_logs.entries())
    for value in seen:
        for part in _secret_parts(value):
            assert part not in captured, f"a secret ({part[:6]}…) reached the logs"
