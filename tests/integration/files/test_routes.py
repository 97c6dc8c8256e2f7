"""The file routes over HTTP (in-process ASGI) against the real database, broker and S3 server."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import User
from app.core.config import Settings
from app.core.db import utc_now
from app.files.models import File, FileStatus
from app.files.staging import keys_of
from app.files.storage import Storage
from app.main import create_app
from app.projects.models import ApiKeyScope, Project, Role
from tests.factories import add_member, auth_headers, make_api_key, make_project, make_user
from tests.integration.files.conftest import event_kinds, make_file, object_bytes

PROBLEM = "application/problem+json"


async def queued_digests(redis: Redis) -> list[str]:
    """File ids of the `files.digest` jobs waiting on the `low` queue."""
    ids = []
    for raw in await redis.lrange("low", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "files.digest":
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            ids.append(args[0])
    return ids


async def _announce(
    client: httpx.AsyncClient, project: Project, headers: dict[str, str], **body: object
) -> httpx.Response:
    return await client.post(
        f"/v1/projects/{project.id}/files",
        json={"filename": "a.bin", "content_type": "application/octet-stream", "size": 3, **body},
        headers=headers,
    )


def _form(
    data: bytes, *, filename: str = "data.csv", content_type: str = "text/csv"
) -> dict[str, tuple[str, bytes, str]]:
    return {"file": (filename, data, content_type)}


class TestCreateFile:
    async def test_signs_a_put_for_exactly_the_declared_bytes(
        self,
        client: httpx.AsyncClient,
        http: httpx.AsyncClient,
        session: AsyncSession,
        project: Project,
        owner: User,
    ) -> None:
        response = await _announce(
            client, project, auth_headers(owner), filename="photo.png", content_type="image/png"
        )

        assert response.status_code == 201
        body = response.json()
        assert body["key"] == f"projects/{project.id}/uploads/{body['id']}"
        assert body["method"] == "PUT"
        assert body["headers"] == {"Content-Type": "image/png", "Content-Length": "3"}
        assert "X-Amz-Expires=300" in body["upload_url"]
        expires_in = datetime.fromisoformat(body["expires_at"]) - utc_now()
        assert timedelta(minutes=4) < expires_in <= timedelta(minutes=5)
        file = await session.get_one(File, uuid.UUID(body["id"]))
        assert file.status == FileStatus.pending
        assert file.expires_at is not None
        assert await event_kinds(session, file.id) == ["file.created"]
        wrong_size = await http.put(
            body["upload_url"], content=b"four", headers={"Content-Type": "image/png"}
        )
        wrong_type = await http.put(
            body["upload_url"], content=b"abc", headers={"Content-Type": "text/html"}
        )
        right = await http.put(body["upload_url"], content=b"abc", headers=body["headers"])
        assert (wrong_size.status_code, wrong_type.status_code, right.status_code) == (
            403,
            403,
            200,
        )

    async def test_a_declared_size_over_the_limit_is_a_413(
        self, client: httpx.AsyncClient, project: Project, owner: User, settings: Settings
    ) -> None:
        response = await _announce(
            client, project, auth_headers(owner), size=settings.files.max_upload_bytes + 1
        )

        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"].endswith("/file-too-large")

    @pytest.mark.parametrize(
        "body",
        [
            {"filename": "nul\x00.txt"},
            {"filename": "../../etc/passwd"},
            {"filename": ""},
            {"content_type": "text/plain\r\nX-Amz-Acl: public-read"},
            {"content_type": "plain"},
            {"size": -1},
            {"size": "big"},
            {"size": 1.5},
            {"key": "projects/other/uploads/x"},
        ],
    )
    async def test_bad_fields_are_a_422_problem_naming_them(
        self, client: httpx.AsyncClient, project: Project, owner: User, body: dict[str, object]
    ) -> None:
        response = await _announce(client, project, auth_headers(owner), **body)

        assert response.status_code == 422
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["errors"][0]["loc"][:2] == ["body", next(iter(body))]

    async def test_a_viewer_may_not_upload_and_an_outsider_learns_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, project: Project
    ) -> None:
        viewer, outsider = await make_user(session), await make_user(session)
        await add_member(session, project, viewer, Role.viewer)

        as_viewer = await _announce(client, project, auth_headers(viewer))
        as_outsider = await _announce(client, project, auth_headers(outsider))

        assert as_viewer.status_code == 403
        assert as_outsider.status_code == 404
        assert as_outsider.json()["type"].endswith("/project-not-found")


class TestCompleteFile:
    async def test_an_uploaded_file_becomes_ready_and_its_digest_is_queued(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        http: httpx.AsyncClient,
        session: AsyncSession,
        redis: Redis,
        project: Project,
        owner: User,
    ) -> None:
        headers = auth_headers(owner)
        created = (await _announce(client, project, headers)).json()
        await http.put(created["upload_url"], content=b"abc", headers=created["headers"])

        response = await client.post(f"/v1/files/{created['id']}/complete", headers=headers)

        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ready"
        assert body["size"] == 3
        assert body["sha256"] is None  # computed by a worker (files.digest)
        assert body["expires_at"] is None  # uploads are kept until deleted
        assert (await http.get(body["download_url"])).content == b"abc"
        kinds = await event_kinds(session, uuid.UUID(created["id"]))
        assert kinds == ["file.created", "file.uploaded", "file.ready"]
        await app.state.publisher.drain()
        assert (await queued_digests(redis)).count(created["id"]) == 1

    async def test_completing_again_queues_no_second_digest(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        http: httpx.AsyncClient,
        session: AsyncSession,
        redis: Redis,
        project: Project,
        owner: User,
    ) -> None:
        headers = auth_headers(owner)
        created = (await _announce(client, project, headers)).json()
        await http.put(created["upload_url"], content=b"abc", headers=created["headers"])

        first = await client.post(f"/v1/files/{created['id']}/complete", headers=headers)
        again = await client.post(f"/v1/files/{created['id']}/complete", headers=headers)

        assert first.status_code == again.status_code == 200
        assert again.json()["status"] == "ready"
        assert again.json()["sha256"] is None
        kinds = await event_kinds(session, uuid.UUID(created["id"]))
        assert kinds == ["file.created", "file.uploaded", "file.ready"]
        await app.state.publisher.drain()  # the API publishes after the response
        assert (await queued_digests(redis)).count(created["id"]) == 1

    async def test_the_upload_url_cannot_replace_a_ready_files_bytes(
        self,
        client: httpx.AsyncClient,
        http: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
        owner: User,
    ) -> None:
        headers = auth_headers(owner)
        created = (await _announce(client, project, headers)).json()
        await http.put(created["upload_url"], content=b"abc", headers=created["headers"])
        ready = await client.post(f"/v1/files/{created['id']}/complete", headers=headers)

        # The URL is still within its lifetime: same size, same type, other bytes.
        again = await http.put(created["upload_url"], content=b"xyz", headers=created["headers"])

        assert ready.status_code == 200
        assert again.status_code == 200  # S3 takes it, but not as the file
        assert (await http.get(ready.json()["download_url"])).content == b"abc"
        async with db() as session:
            file = await session.get_one(File, uuid.UUID(created["id"]))
        assert await object_bytes(storage, file.key) == b"abc"

    async def test_deleting_a_file_deletes_what_a_late_put_left(
        self,
        client: httpx.AsyncClient,
        http: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
        owner: User,
    ) -> None:
        headers = auth_headers(owner)
        created = (await _announce(client, project, headers)).json()
        await http.put(created["upload_url"], content=b"abc", headers=created["headers"])
        await client.post(f"/v1/files/{created['id']}/complete", headers=headers)
        await http.put(created["upload_url"], content=b"xyz", headers=created["headers"])
        async with db() as session:
            file = await session.get_one(File, uuid.UUID(created["id"]))

        deleted = await client.delete(f"/v1/files/{created['id']}", headers=headers)

        assert deleted.status_code == 204
        assert [await object_bytes(storage, key) for key in keys_of(file)] == [None, None]

    async def test_completing_before_the_upload_is_a_409(
        self, client: httpx.AsyncClient, project: Project, owner: User
    ) -> None:
        headers = auth_headers(owner)
        created = (await _announce(client, project, headers)).json()

        response = await client.post(f"/v1/files/{created['id']}/complete", headers=headers)

        assert response.status_code == 409
        assert response.json()["type"].endswith("/file-not-uploaded")

    async def test_another_projects_file_cannot_be_completed(
        self, client: httpx.AsyncClient, session: AsyncSession, project: Project, owner: User
    ) -> None:
        created = (await _announce(client, project, auth_headers(owner))).json()
        stranger = await make_user(session)
        await make_project(session, owner=stranger)

        response = await client.post(
            f"/v1/files/{created['id']}/complete", headers=auth_headers(stranger)
        )

        assert response.status_code == 404
        assert response.json()["type"].endswith("/file-not-found")


@pytest.fixture
async def small_client(
    settings: Settings, db: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with `files:upload` capped at 1000 bytes."""
    files = settings.files.model_copy(update={"max_direct_upload_bytes": 1000})
    application: FastAPI = create_app(settings.model_copy(update={"files": files}))
    async with application.router.lifespan_context(application):
        application.state.sessionmaker = db
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://taskgate.test") as c:
            yield c


class TestUploadFile:
    async def test_a_multipart_file_streams_to_s3_and_is_ready_at_once(
        self,
        client: httpx.AsyncClient,
        http: httpx.AsyncClient,
        session: AsyncSession,
        storage: Storage,
        project: Project,
        owner: User,
    ) -> None:
        data = os.urandom(1_500_000)

        response = await client.post(
            f"/v1/projects/{project.id}/files:upload",
            files=_form(data, filename="rows.csv", content_type="text/csv; charset=utf-8"),
            headers=auth_headers(owner),
        )

        assert response.status_code == 201
        body = response.json()
        assert body["status"] == "ready"
        assert body["filename"] == "rows.csv"
        assert body["content_type"] == "text/csv; charset=utf-8"
        assert body["size"] == len(data)
        assert body["sha256"] == hashlib.sha256(data).hexdigest()
        assert await object_bytes(storage, body["key"]) == data
        download = await http.get(body["download_url"])
        assert download.content == data
        assert "rows.csv" in download.headers["content-disposition"]
        assert download.headers["content-type"] == "text/csv; charset=utf-8"
        assert await event_kinds(session, uuid.UUID(body["id"])) == ["file.uploaded", "file.ready"]

    async def test_a_file_larger_than_a_part_goes_up_in_parts(
        self,
        client: httpx.AsyncClient,
        storage: Storage,
        project: Project,
        owner: User,
        settings: Settings,
    ) -> None:
        data = os.urandom(settings.files.part_size_bytes + 1_000_000)

        response = await client.post(
            f"/v1/projects/{project.id}/files:upload",
            files=_form(data, filename="big.bin", content_type="application/octet-stream"),
            headers=auth_headers(owner),
        )

        assert response.status_code == 201, response.text
        assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()
        assert await object_bytes(storage, response.json()["key"]) == data

    async def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(
        self, small_client: httpx.AsyncClient, project: Project, owner: User
    ) -> None:
        response = await small_client.post(
            f"/v1/projects/{project.id}/files:upload",
            files=_form(b"x" * 20_000),
            headers=auth_headers(owner),
        )

        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM

    async def test_a_streamed_file_over_the_limit_is_a_413_and_leaves_nothing(
        self, small_client: httpx.AsyncClient, storage: Storage, project: Project, owner: User
    ) -> None:
        head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n'

        async def body() -> AsyncIterator[bytes]:  # chunked: no Content-Length to check first
            yield head
            for _ in range(10):
                yield b"x" * 500

        response = await small_client.post(
            f"/v1/projects/{project.id}/files:upload",
            content=body(),
            headers={**auth_headers(owner), "Content-Type": "multipart/form-data; boundary=b"},
        )

        assert response.status_code == 413
        listed = storage.client.list_objects_v2(
            Bucket=storage.bucket, Prefix=f"projects/{project.id}/"
        )
        assert listed.get("KeyCount", 0) == 0

    @pytest.mark.parametrize(
        ("content_type", "content", "status"),
        [
            ("application/json", b"{}", 415),
            (None, b"abc", 415),
            ("multipart/form-data", b"abc", 422),
            ("multipart/form-data; boundary=zz", b"--zz\r\ngarbage", 422),
        ],
    )
    async def test_a_body_that_is_not_one_file_is_a_problem(
        self,
        client: httpx.AsyncClient,
        project: Project,
        owner: User,
        content_type: str | None,
        content: bytes,
        status: int,
    ) -> None:
        headers = auth_headers(owner)
        if content_type is not None:
            headers["Content-Type"] = content_type

        response = await client.post(
            f"/v1/projects/{project.id}/files:upload", content=content, headers=headers
        )

        assert response.status_code == status
        assert response.headers["content-type"] == PROBLEM

    async def test_a_read_only_api_key_may_not_upload(
        self, client: httpx.AsyncClient, session: AsyncSession, project: Project
    ) -> None:
        _, key = await make_api_key(session, project, scopes=[ApiKeyScope.read])

        response = await client.post(
            f"/v1/projects/{project.id}/files:upload", files=_form(b"1"), headers=auth_headers(key)
        )

        assert response.status_code == 403


class TestReadFiles:
    async def test_lists_the_projects_files_newest_first_a_page_at_a_time(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
        owner: User,
    ) -> None:
        older = await make_file(db, storage, project, b"1", created_at=utc_now() - timedelta(1))
        newer = await make_file(db, storage, project, b"2")
        headers = auth_headers(owner)

        first = (
            await client.get(f"/v1/projects/{project.id}/files?limit=1", headers=headers)
        ).json()
        second = (
            await client.get(
                f"/v1/projects/{project.id}/files?limit=1&cursor={first['next_cursor']}",
                headers=headers,
            )
        ).json()

        assert [item["id"] for item in first["items"]] == [str(newer.id)]
        assert [item["id"] for item in second["items"]] == [str(older.id)]
        assert second["next_cursor"] is None
        assert first["items"][0]["download_url"]

    async def test_a_viewer_reads_a_file_and_downloads_it(
        self,
        client: httpx.AsyncClient,
        http: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        session: AsyncSession,
        storage: Storage,
        project: Project,
    ) -> None:
        file = await make_file(db, storage, project, b"hello", filename="héllo.txt")
        viewer = await make_user(session)
        await add_member(session, project, viewer, Role.viewer)

        response = await client.get(f"/v1/files/{file.id}", headers=auth_headers(viewer))

        assert response.status_code == 200
        body = response.json()
        assert body["sha256"] == hashlib.sha256(b"hello").hexdigest()
        assert "X-Amz-Expires=900" in body["download_url"]
        download = await http.get(body["download_url"])
        assert download.content == b"hello"
        assert "UTF-8''h%C3%A9llo.txt" in download.headers["content-disposition"]

    async def test_another_projects_files_are_not_found_and_not_listed(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        session: AsyncSession,
        storage: Storage,
        project: Project,
        owner: User,
    ) -> None:
        theirs = await make_file(db, storage, project, b"secret")
        stranger = await make_user(session)
        own = await make_project(session, owner=stranger)
        _, their_key = await make_api_key(session, own)

        by_user = await client.get(f"/v1/files/{theirs.id}", headers=auth_headers(stranger))
        by_key = await client.get(f"/v1/files/{theirs.id}", headers=auth_headers(their_key))
        listed = await client.get(f"/v1/projects/{own.id}/files", headers=auth_headers(stranger))
        listed_other = await client.get(
            f"/v1/projects/{project.id}/files", headers=auth_headers(stranger)
        )
        unknown = await client.get(f"/v1/files/{uuid.uuid4()}", headers=auth_headers(owner))

        assert by_user.status_code == by_key.status_code == unknown.status_code == 404
        assert by_user.json() | {"request_id": None, "instance": None} == unknown.json() | {
            "request_id": None,
            "instance": None,
        }
        assert listed.json()["items"] == []
        assert listed_other.status_code == 404

    async def test_a_pending_file_has_no_download_url(
        self, client: httpx.AsyncClient, project: Project, owner: User
    ) -> None:
        created = (await _announce(client, project, auth_headers(owner))).json()

        body = (await client.get(f"/v1/files/{created['id']}", headers=auth_headers(owner))).json()

        assert body["status"] == "pending"
        assert body["download_url"] is None


class TestDeleteFile:
    async def test_deletes_the_row_and_the_object(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        session: AsyncSession,
        storage: Storage,
        project: Project,
        owner: User,
    ) -> None:
        file = await make_file(db, storage, project, b"bye")
        headers = auth_headers(owner)

        response = await client.delete(f"/v1/files/{file.id}", headers=headers)
        again = await client.delete(f"/v1/files/{file.id}", headers=headers)

        assert response.status_code == 204
        assert again.status_code == 404
        assert await session.get(File, file.id) is None
        assert await object_bytes(storage, file.key) is None
        assert await event_kinds(session, file.id) == ["file.deleted"]

    async def test_nobody_outside_the_project_can_delete_and_a_viewer_cannot(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        session: AsyncSession,
        storage: Storage,
        project: Project,
    ) -> None:
        file = await make_file(db, storage, project, b"keep")
        viewer, stranger = await make_user(session), await make_user(session)
        await add_member(session, project, viewer, Role.viewer)

        as_viewer = await client.delete(f"/v1/files/{file.id}", headers=auth_headers(viewer))
        as_stranger = await client.delete(f"/v1/files/{file.id}", headers=auth_headers(stranger))

        assert (as_viewer.status_code, as_stranger.status_code) == (403, 404)
        assert await object_bytes(storage, file.key) == b"keep"
