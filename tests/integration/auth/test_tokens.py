"""Refresh rotation and reuse detection; forged credentials over HTTP; API key authentication."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiKey, RefreshToken, User
from app.core.config import SecuritySettings
from app.core.security import issue_access_token, issue_refresh_token
from app.projects.models import Project
from tests.factories import (
    DEFAULT_PASSWORD,
    auth_headers,
    make_api_key,
    make_project,
    make_user,
    security_settings,
)
from tests.integration.auth.conftest import ClientFor, events_of, problem_identity
from tests.unit.auth.tokens import claims, ed25519_pem, hmac_signed, sign, unsigned, with_payload


async def _sign_in(client: httpx.AsyncClient, user: User) -> dict[str, str]:
    response = await client.post(
        "/v1/auth/token", data={"username": user.email, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 200
    tokens: dict[str, str] = response.json()
    return tokens


async def _refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post("/v1/auth/refresh", json={"refresh_token": refresh_token})


class TestRefresh:
    async def test_gives_a_new_pair_and_uses_up_the_old_refresh_token(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        first = await _sign_in(client, user)

        response = await _refresh(client, first["refresh_token"])

        assert response.status_code == 200
        second = response.json()
        assert second["refresh_token"] != first["refresh_token"]
        me = await client.get("/v1/users/me", headers=auth_headers(second["access_token"]))
        assert me.status_code == 200

    async def test_a_reused_refresh_token_revokes_the_whole_family(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        first = await _sign_in(client, user)
        second = (await _refresh(client, first["refresh_token"])).json()

        reuse = await _refresh(client, first["refresh_token"])
        after_reuse = await _refresh(client, second["refresh_token"])

        assert reuse.status_code == 401
        assert reuse.json()["type"].endswith("/invalid-refresh-token")
        assert "www-authenticate" not in reuse.headers  # the token went in the body
        assert after_reuse.status_code == 401
        [event] = await events_of(session, "user.refresh_token_reused", subject_id=user.id)
        assert event.actor_type == "system"

    async def test_another_sign_in_is_not_revoked_by_a_reuse(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        stolen = await _sign_in(client, user)
        other_device = await _sign_in(client, user)
        await _refresh(client, stolen["refresh_token"])

        await _refresh(client, stolen["refresh_token"])

        assert (await _refresh(client, other_device["refresh_token"])).status_code == 200

    async def test_the_revocation_is_kept_although_the_answer_is_an_error(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        first = await _sign_in(client, user)
        await _refresh(client, first["refresh_token"])

        await _refresh(client, first["refresh_token"])

        rows = await session.scalars(
            select(RefreshToken)
            .where(RefreshToken.user_id == user.id)
            .execution_options(populate_existing=True)
        )
        assert all(row.revoked_at is not None for row in rows)

    async def test_an_access_token_is_not_a_refresh_token(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        tokens = await _sign_in(client, user)

        response = await _refresh(client, tokens["access_token"])

        assert response.status_code == 401

    async def test_a_refresh_token_is_not_an_access_token(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        tokens = await _sign_in(client, user)

        response = await client.get("/v1/users/me", headers=auth_headers(tokens["refresh_token"]))

        assert response.status_code == 401

    async def test_a_validly_signed_refresh_token_without_a_row_is_refused(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        token = issue_refresh_token(security_settings(), subject=user.id, token_id=uuid.uuid4())

        response = await _refresh(client, token.token)

        assert response.status_code == 401

    async def test_a_deactivated_user_cannot_refresh(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        tokens = await _sign_in(client, user)
        user.is_active = False
        await session.flush()

        response = await _refresh(client, tokens["refresh_token"])

        assert response.status_code == 401

    @pytest.mark.parametrize("token", ["x" * 9000, "garbage", "é" * 10])
    async def test_malformed_refresh_tokens_are_401(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        response = await _refresh(client, token)

        assert response.status_code == 401


def _forgeries(settings: SecuritySettings, user_id: uuid.UUID) -> dict[str, dict[str, str]]:
    """Authorization headers that must all fail the same way, for a user that exists."""
    secret = settings.jwt_secret.get_secret_value()
    valid = claims(settings, sub=str(user_id))
    now = int(datetime.now(UTC).timestamp())
    real = issue_access_token(settings, subject=user_id).token
    bearer = {
        "alg-none": unsigned(valid),
        "tampered-payload": with_payload(real, {**valid, "sub": str(uuid.uuid4())}),
        "wrong-key": sign(valid, secrets.token_bytes(32)),
        "expired": sign({**valid, "iat": now - 600, "exp": now - 60}, secret),
        "wrong-aud": sign({**valid, "aud": "another-api"}, secret),
        "wrong-iss": sign({**valid, "iss": "someone-else"}, secret),
        "refresh-as-access": issue_refresh_token(
            settings, subject=user_id, token_id=uuid.uuid4()
        ).token,
        "oversized": sign({**valid, "padding": "x" * 9000}, secret),
        "unknown-user": issue_access_token(settings, subject=uuid.uuid4()).token,
        "unknown-api-key": f"tg_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}",
        "malformed-api-key": "tg_nope",
        "empty": "",
    }
    headers = {name: {"Authorization": f"Bearer {token}"} for name, token in bearer.items()}
    headers["basic-scheme"] = {"Authorization": "Basic dXNlcjpwYXNz"}
    headers["no-scheme"] = {"Authorization": real}
    headers["missing"] = {}
    return headers


class TestForgedCredentials:
    async def test_every_forgery_is_the_same_401_problem(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        baseline = await client.get("/v1/users/me", headers=auth_headers(user))
        assert baseline.status_code == 200
        identities = set()

        for name, headers in _forgeries(security_settings(), user.id).items():
            response = await client.get("/v1/users/me", headers=headers)

            assert response.status_code == 401, name
            assert response.headers["www-authenticate"] == "Bearer", name
            assert response.headers["content-type"] == "application/problem+json", name
            identities.add(problem_identity(response))
        assert len(identities) == 1  # nothing tells which check failed

    async def test_a_deactivated_users_token_stops_working(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        headers = auth_headers(user)
        user.is_active = False
        await session.flush()

        response = await client.get("/v1/users/me", headers=headers)

        assert response.status_code == 401


def _changed(security: SecuritySettings, **changes: object) -> SecuritySettings:
    return SecuritySettings.model_validate({**security.model_dump(), **changes})


class TestAsymmetricKeys:
    async def test_hs256_signed_with_the_public_key_is_refused_and_eddsa_accepted(
        self, client_for: ClientFor, session: AsyncSession
    ) -> None:
        private, public = ed25519_pem()
        security = _changed(security_settings(), jwt_algorithm="EdDSA", jwt_private_key=private)
        user = await make_user(session)
        forged = hmac_signed(claims(security, sub=str(user.id)), public.encode())
        genuine = issue_access_token(security, subject=user.id).token

        async with client_for(security) as client:
            refused = await client.get("/v1/users/me", headers=auth_headers(forged))
            accepted = await client.get("/v1/users/me", headers=auth_headers(genuine))

        assert refused.status_code == 401
        assert accepted.status_code == 200

    async def test_tokens_of_the_previous_key_work_after_a_rotation(
        self, client_for: ClientFor, session: AsyncSession
    ) -> None:
        old = security_settings()
        new = _changed(
            old,
            jwt_secret=secrets.token_urlsafe(32),
            jwt_key_id="k2",
            jwt_previous_key_id=old.jwt_key_id,
            jwt_previous_key=old.jwt_secret,
        )
        user = await make_user(session)

        async with client_for(new) as client:
            response = await client.get("/v1/users/me", headers=auth_headers(user))

        assert response.status_code == 200


class TestApiKeys:
    async def _key(self, session: AsyncSession) -> tuple[Project, ApiKey, str]:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
        api_key, secret = await make_api_key(session, project)
        return project, api_key, secret

    async def test_a_key_reads_its_project(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        project, _, secret = await self._key(session)

        response = await client.get(f"/v1/projects/{project.id}", headers=auth_headers(secret))

        assert response.status_code == 200
        assert response.json()["role"] == "member"

    async def test_a_key_on_a_user_only_route_is_a_403(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, _, secret = await self._key(session)

        response = await client.get("/v1/users/me", headers=auth_headers(secret))

        assert response.status_code == 403
        assert response.json()["type"].endswith("/user-token-required")

    async def test_a_revoked_key_is_refused_on_the_next_request(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
        api_key, secret = await make_api_key(session, project)
        assert (
            await client.get(f"/v1/projects/{project.id}", headers=auth_headers(secret))
        ).status_code == 200

        revoke = await client.delete(
            f"/v1/projects/{project.id}/api-keys/{api_key.id}", headers=auth_headers(owner)
        )
        response = await client.get(f"/v1/projects/{project.id}", headers=auth_headers(secret))

        assert revoke.status_code == 204
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_a_key_with_one_wrong_character_is_refused(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        project, _, secret = await self._key(session)
        wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")

        response = await client.get(f"/v1/projects/{project.id}", headers=auth_headers(wrong))

        assert response.status_code == 401

    async def test_use_is_recorded_at_most_once_a_minute(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        project, api_key, secret = await self._key(session)
        url = f"/v1/projects/{project.id}"

        await client.get(url, headers=auth_headers(secret))
        await session.refresh(api_key)
        first_use = api_key.last_used_at
        await client.get(url, headers=auth_headers(secret))
        await session.refresh(api_key)

        assert first_use is not None
        assert api_key.last_used_at == first_use

    async def test_use_is_recorded_again_once_the_last_one_is_stale(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        project, api_key, secret = await self._key(session)
        stale = datetime.now(UTC) - timedelta(minutes=5)
        api_key.last_used_at = stale
        await session.flush()

        await client.get(f"/v1/projects/{project.id}", headers=auth_headers(secret))

        await session.refresh(api_key)
        assert api_key.last_used_at is not None
        assert api_key.last_used_at > stale
