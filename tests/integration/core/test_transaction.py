from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import User
from app.core.db import after_commit, transaction


class TestTransaction:
    async def test_commits_on_success_and_then_runs_after_commit_work(
        self, db: async_sessionmaker[AsyncSession]
    ) -> None:
        ran: list[str] = []
        email = f"{uuid.uuid4().hex}@example.com"

        async with transaction(db) as session:
            session.add(User(email=email, password_hash="x"))
            after_commit(session, lambda: ran.append("after"))
            assert ran == []

        assert ran == ["after"]
        async with db() as session:
            assert await session.scalar(select(User.email).where(User.email == email)) == email

    async def test_rolls_back_on_error_and_skips_after_commit_work(
        self, db: async_sessionmaker[AsyncSession]
    ) -> None:
        ran: list[str] = []
        email = f"{uuid.uuid4().hex}@example.com"

        async def write_then_fail() -> None:
            async with transaction(db) as session:
                session.add(User(email=email, password_hash="x"))
                await session.flush()
                after_commit(session, lambda: ran.append("after"))
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await write_then_fail()

        assert ran == []
        async with db() as session:
            assert await session.scalar(select(User).where(User.email == email)) is None

    async def test_a_failing_after_commit_callback_does_not_undo_the_commit(
        self, db: async_sessionmaker[AsyncSession]
    ) -> None:
        email = f"{uuid.uuid4().hex}@example.com"

        def explode() -> None:
            raise RuntimeError("callback failed")

        async with transaction(db) as session:
            session.add(User(email=email, password_hash="x"))
            after_commit(session, explode)

        async with db() as session:
            assert await session.scalar(select(User.email).where(User.email == email)) == email


class TestSchemaConstraints:
    async def test_emails_are_stored_lower_case_only(
        self, db: async_sessionmaker[AsyncSession]
    ) -> None:
        with pytest.raises(IntegrityError, match="ck_users_email_lowercase"):
            async with transaction(db) as session:
                session.add(User(email="Mixed@Example.com", password_hash="x"))
