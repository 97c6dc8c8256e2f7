"""Registration, sign-in and the current user, over HTTP."""

from __future__ import annotations

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from tests.factories import DEFAULT_PASSWORD, auth_headers, make_user
from tests.integration.auth.conftest import events_of, problem_identity

PASSWORD = "correct horse battery staple"


async def _register(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> httpx.Response:
    return await client.post("/v1/auth/register", json={"email": email, "password": password})


async def _sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(
        "/v1/auth/token", data={"grant_type": "password", "username": email, "password": password}
    )


class TestRegister:
    async def test_creates_the_user_with_an_argon2id_hash(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        response = await _register(client, "ada@example.com")

        assert response.status_code == 201
        body = response.json()
        assert set(body) == {"id", "email", "created_at"}
        assert body["email"] == "ada@example.com"
        user = await session.get_one(User, body["id"])
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash

    async def test_stores_the_email_lower_cased(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        response = await _register(client, "Ada.Lovelace@Example.COM")

        assert response.json()["email"] == "ada.lovelace@example.com"
        stored = await session.scalar(select(User.email).where(User.id == response.json()["id"]))
        assert stored == "ada.lovelace@example.com"

    async def test_an_email_taken_in_another_case_is_a_409(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await make_user(session, email="grace@example.com")

        response = await _register(client, "GRACE@example.com")

        assert response.status_code == 409
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("/email-taken")

    async def test_records_a_user_registered_event_without_the_password(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        response = await _register(client, "linus@example.com")

        user_id = response.json()["id"]
        [event] = await events_of(session, "user.registered", subject_id=user_id)
        assert event.actor_type == "user"
        assert str(event.actor_id) == user_id
        assert event.request_id == response.headers["x-request-id"]
        assert PASSWORD not in str(event.data)

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param({"email": "ada@example.com", "password": "short"}, id="short-password"),
            pytest.param({"email": "ada@example.com", "password": "x" * 129}, id="long-password"),
            pytest.param({"email": "not-an-email", "password": PASSWORD}, id="bad-email"),
            pytest.param({"email": "a" * 10_000 + "@example.com", "password": PASSWORD}, id="huge"),
            pytest.param({"email": 42, "password": PASSWORD}, id="wrong-type"),
            pytest.param({"email": "ada@example.com"}, id="missing-password"),
            pytest.param(
                {"email": "ada@example.com", "password": PASSWORD, "is_admin": True}, id="extra"
            ),
            pytest.param([], id="not-an-object"),
        ],
    )
    async def test_bad_input_is_a_422_problem(
        self, client: httpx.AsyncClient, body: object
    ) -> None:
        response = await client.post("/v1/auth/register", json=body)

        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"

    async def test_malformed_json_is_a_422_problem(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/auth/register",
            content=b'{"email": ',
            headers={"content-type": "application/json"},
        )

        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"


class TestSignIn:
    async def test_the_right_password_gives_tokens_that_work(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)

        response = await _sign_in(client, user.email, DEFAULT_PASSWORD)

        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
        assert body["token_type"] == "bearer"
        assert 0 < body["expires_in"] <= 900
        me = await client.get("/v1/users/me", headers=auth_headers(body["access_token"]))
        assert me.json()["id"] == str(user.id)

    async def test_the_email_is_matched_regardless_of_case(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)

        response = await _sign_in(client, user.email.upper(), DEFAULT_PASSWORD)

        assert response.status_code == 200

    async def test_records_the_sign_in_time(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)

        await _sign_in(client, user.email, DEFAULT_PASSWORD)

        await session.refresh(user)
        assert user.last_login_at is not None

    async def test_unknown_email_wrong_password_and_inactive_user_are_the_same_401(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        inactive = await make_user(session, is_active=False)

        wrong_password = await _sign_in(client, user.email, "not the password")
        unknown = await _sign_in(client, "nobody@example.com", DEFAULT_PASSWORD)
        disabled = await _sign_in(client, inactive.email, DEFAULT_PASSWORD)

        assert wrong_password.status_code == 401
        assert wrong_password.headers["www-authenticate"] == "Bearer"
        assert problem_identity(wrong_password) == problem_identity(unknown)
        assert problem_identity(wrong_password) == problem_identity(disabled)

    async def test_a_hash_made_with_weaker_parameters_is_upgraded_on_sign_in(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
        user = await make_user(session)
        user.password_hash = weak.hash("an older password")
        await session.flush()

        response = await _sign_in(client, user.email, "an older password")

        assert response.status_code == 200
        await session.refresh(user)
        assert user.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")

    @pytest.mark.parametrize(
        "form",
        [
            pytest.param({"username": "a@example.com"}, id="no-password"),
            pytest.param(
                {"grant_type": "client_credentials", "username": "a@example.com", "password": "x"},
                id="other-grant",
            ),
            pytest.param({"username": "a" * 1000, "password": "x"}, id="huge-username"),
        ],
    )
    async def test_a_malformed_form_is_a_422(
        self, client: httpx.AsyncClient, form: dict[str, str]
    ) -> None:
        response = await client.post("/v1/auth/token", data=form)

        assert response.status_code == 422

    async def test_json_instead_of_a_form_is_a_422(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/auth/token", json={"username": "a@example.com", "password": "x"}
        )

        assert response.status_code == 422


class TestMe:
    async def test_returns_the_signed_in_user(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)

        response = await client.get("/v1/users/me", headers=auth_headers(user))

        assert response.status_code == 200
        assert response.json() == {
            "id": str(user.id),
            "email": user.email,
            "created_at": response.json()["created_at"],
        }

    async def test_without_credentials_is_a_401_with_the_bearer_challenge(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/v1/users/me")

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == "application/problem+json"
