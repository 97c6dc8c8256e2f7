"""Tasks on files: references checked at submit, resolved per project on the worker, the four
built-in file types run in-process against the real database and S3 server, large results."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import os
import uuid
import zipfile
from dataclasses import dataclass, field

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import User
from app.core.config import Settings, TaskSettings
from app.core.db import transaction, utc_now
from app.files import worker_side
from app.files.models import File, FileStatus
from app.files.storage import READ_CHUNK_BYTES, ObjectReader, Storage, object_key
from app.files.taskfiles import TaskFiles
from app.projects.models import Project
from app.tasks.models import Task, TaskStatus
from app.tasktypes.files.csv_profile import FIELD_SIZE_LIMIT, MAX_RECORD_CHARS
from tests.factories import auth_headers, make_project, make_user
from tests.integration.files.conftest import event_kinds, make_file, object_bytes, run_task


def _png(width: int, height: int, mode: str = "RGBA") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), (200, 30, 30, 255) if mode == "RGBA" else 128).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


@dataclass(frozen=True)
class _ReadCountingStorage(Storage):
    """The real bucket, remembering every object reader it opens: how much a task read."""

    opened: list[ObjectReader] = field(default_factory=list)

    def open(self, key: str) -> ObjectReader:
        reader = super().open(key)
        self.opened.append(reader)
        return reader

    def bytes_read(self) -> int:
        return sum(reader.bytes_read for reader in self.opened)


async def _output(db: async_sessionmaker[AsyncSession], file_id: str) -> File:
    async with db() as session:
        return await session.get_one(File, uuid.UUID(file_id))


class TestSubmitWithFiles:
    async def test_a_file_of_the_project_is_accepted(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
        owner: User,
    ) -> None:
        file = await make_file(db, storage, project, b"x")

        response = await client.post(
            f"/v1/projects/{project.id}/tasks",
            json={"type": "file.checksum", "input": {"file_id": str(file.id)}},
            headers=auth_headers(owner),
        )

        assert response.status_code == 202

    async def test_another_projects_file_is_a_422_naming_the_field(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        session: AsyncSession,
        storage: Storage,
        project: Project,
        owner: User,
    ) -> None:
        own = await make_file(db, storage, project, b"mine")
        stranger = await make_user(session)
        other_project = await make_project(session, owner=stranger)
        theirs = await make_file(db, storage, other_project, b"theirs")

        response = await client.post(
            f"/v1/projects/{project.id}/tasks",
            json={
                "type": "archive.zip",
                "input": {"file_ids": [str(own.id), str(theirs.id), str(uuid.uuid4())]},
            },
            headers=auth_headers(owner),
        )

        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        errors = response.json()["errors"]
        assert [error["loc"] for error in errors] == [
            ["body", "input", "file_ids", 1],
            ["body", "input", "file_ids", 2],
        ]
        assert {error["type"] for error in errors} == {"file_not_found"}
        written = select(func.count()).select_from(Task).where(Task.project_id == project.id)
        assert await session.scalar(written) == 0

    @pytest.mark.parametrize(
        "encoding", ["rot13", "base64_codec", "zlib_codec", "punycode", "idna"]
    )
    async def test_an_encoding_that_is_no_character_set_is_a_422_naming_the_field(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        session: AsyncSession,
        storage: Storage,
        project: Project,
        owner: User,
        encoding: str,
    ) -> None:
        file = await make_file(db, storage, project, b"a,b\n1,2\n")

        response = await client.post(
            f"/v1/projects/{project.id}/tasks",
            json={"type": "csv.profile", "input": {"file_id": str(file.id), "encoding": encoding}},
            headers=auth_headers(owner),
        )

        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert [error["loc"] for error in response.json()["errors"]] == [
            ["body", "input", "encoding"]
        ]
        written = select(func.count()).select_from(Task).where(Task.project_id == project.id)
        assert await session.scalar(written) == 0


class TestChecksum:
    async def test_sha256_md5_and_size_of_the_bytes_in_s3(
        self,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
        limits: TaskSettings,
    ) -> None:
        data = os.urandom(3 * 1024 * 1024 + 17)
        file = await make_file(db, storage, project, data)

        task = await run_task(
            db, project, storage, limits, "file.checksum", {"file_id": str(file.id)}
        )

        assert task.status == TaskStatus.succeeded, task.error
        assert task.result == {
            "file_id": str(file.id),
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        }
        assert task.progress == 1.0

    async def test_a_task_cannot_read_another_projects_file_even_past_submit(
        self,
        db: async_sessionmaker[AsyncSession],
        session: AsyncSession,
        storage: Storage,
        project: Project,
        limits: TaskSettings,
    ) -> None:
        other_project = await make_project(session, owner=await make_user(session))
        theirs = await make_file(db, storage, other_project, b"secret")

        task = await run_task(
            db, project, storage, limits, "file.checksum", {"file_id": str(theirs.id)}
        )

        assert task.status == TaskStatus.failed
        assert task.error is not None
        assert task.error["type"] == "file_not_found"
        assert "secret" not in str(task.error)

    async def test_first_use_of_an_uncompleted_upload_checks_it_and_records_its_digest(
        self,
        db: async_sessionmaker[AsyncSession],
        session: AsyncSession,
        storage: Storage,
        project: Project,
        limits: TaskSettings,
    ) -> None:
        data = b"uploaded but never completed"
        file = await make_file(db, storage, project, data, status=FileStatus.pending, sha256=None)

        task = await run_task(
            db, project, storage, limits, "file.checksum", {"file_id": str(file.id)}
        )

        assert task.status == TaskStatus.succeeded
        ready = await _output(db, str(file.id))
        assert ready.status == FileStatus.ready
        assert ready.sha256 == hashlib.sha256(data).hexdigest()
        assert await event_kinds(session, file.id) == ["file.ready"]

    async def test_an_announced_file_never_uploaded_fails_the_task_clearly(
        self,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
        limits: TaskSettings,
    ) -> None:
        file = await make_file(
            db, storage, project, b"abc", status=FileStatus.pending, upload=False
        )

        task = await run_task(
            db, project, storage, limits, "file.checksum", {"file_id": str(file.id)}
        )

        assert task.status == TaskStatus.failed
        assert task.error is not None
        assert task.error["type"] == "file_not_ready"


class TestThumbnail:
    async def test_a_png_is_scaled_into_a_new_file_of_the_project(
        self,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
        limits: TaskSettings,
    ) -> None:
        source = await make_file(
            db, storage, project, _png(640, 480), filename="photo.png", content_type="image/png"
        )

        task = await run_task(
            db,
            project,
            storage,
            limits,
            "image.thumbnail",
            {"file_id": str(source.id), "width": 128},
        )

        assert task.status == TaskStatus.succeeded, task.error
        assert task.result is not None
        assert (task.result["width"], task.result["height"]) == (128, 96)
        output = await _output(db, task.result["file_id"])
        assert output.key == object_key(project.id, "outputs", str(output.id))
        assert (output.status, output.task_id, output.filename) == (
            FileStatus.ready,
            task.id,
            "photo.thumbnail.png",
        )
        assert output.content_type == "image/png"
        assert output.expires_at is not None
        data = await object_bytes(storage, output.key)
        assert data is not None
        assert output.sha256 == hashlib.sha256(data).hexdigest()
        with Image.open(io.BytesIO(data)) as image:
            assert image.size == (128, 96)

    async def test_jpeg_output_drops_the_alpha_channel(
        self,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
        limits: TaskSettings,
    ) -> None:
        source = await make_file(db, storage, project, _png(50, 100))

        task = await run_task(
            db,
            project,
            storage,
            limits,
            "image.thumbnail",
            {"file_id": str(source.id), "height": 40, "format": "jpeg", "filename": "t.jpg"},
        )

        assert task.status == TaskStatus.succeeded, task.error
        assert task.result is not None
        output = await _output(db, task.result["file_id"])
        data = await object_bytes(storage, output.key)
        assert data is not None
        with Image.open(io.BytesIO(data)) as image:
            assert (image.format, image.size, image.mode) == ("JPEG", (20, 40), "RGB")

    async def test_a_file_that_is_not_an_image_fails_without_retry(
        self,
        db: async_sessionmaker[AsyncSession],
        session: AsyncSession,
        storage: Storage,
        project: Project,
        limits: TaskSettings,
    ) -> None:
        source = await make_file(db, storage, project, b"%PDF-1.4 not an image")

        task = await run_task(
            db, project, storage, limits, "image.thumbnail", {"file_id": str(source.id), "width": 8}
        )

        assert task.status == TaskStatus.failed
        assert task.error is not None
        assert task.error["type"] == "input"
        outputs = await session.scalar(select(func.count()).where(File.task_id == task.id))
        assert outputs == 0


class TestCsvProfile:
    async def test_a_csv_is_profiled_in_one_pass(
        self,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
        limits: TaskSettings,
    ) -> None:
        rows = [["id", "price", "city", "active", "day"]]
        rows += [
            [
                str(i),
                f"{i * 1.5:.1f}" if i % 10 else "",
                ["Paris", "Oslo", "Rome"][i % 3],
                "true",
                "",
            ]
            for i in range(1, 301)
        ]
        rows += [["301", "2", "Paris", "false", "2024-01-01", "extra"]]
        text = io.StringIO()
        csv.writer(text).writerows(rows)
        source = await make_file(db, storage, project, text.getvalue().encode())

        task = await run_task(
            db,
            project,
            storage,
            limits,
            "csv.profile",
            {"file_id": str(source.id), "top_values": 2},
        )

        assert task.status == TaskStatus.succeeded, task.error
        result = task.result
        assert result is not None
        assert (result["rows"], result["columns"], result["ragged_rows"]) == (301, 5, 1)
        fields = {field["name"]: field for field in result["fields"]}
        assert fields["id"]["type"] == "integer"
        assert (fields["id"]["min"], fields["id"]["max"], fields["id"]["mean"]) == (1, 301, 151)
        assert fields["price"]["type"] == "float"
        assert fields["price"]["nulls"] == 30
        assert fields["city"]["type"] == "string"
        assert fields["city"]["top_values"] == [
            {"value": "Paris", "count": 101},
            {"value": "Oslo", "count": 100},
        ]
        assert fields["active"]["type"] == "boolean"
        assert (fields["day"]["type"], fields["day"]["nulls"]) == ("datetime", 300)

    async def test_bytes_that_are_not_the_encoding_fail_as_input(
        self,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
        limits: TaskSettings,
    ) -> None:
        source = await make_file(db, storage, project, b"a,b\n\xff\xfe,1\n")

        task = await run_task(
            db, project, storage, limits, "csv.profile", {"file_id": str(source.id)}
        )

        assert task.status == TaskStatus.failed
        assert task.error is not None
        assert task.error["type"] == "input"

    async def test_a_field_over_the_size_limit_fails_as_input_naming_its_line(
        self,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
        limits: TaskSettings,
    ) -> None:
        huge = b"7" * (FIELD_SIZE_LIMIT + 1)
        source = await make_file(db, storage, project, b"a,b\n1,2\n3," + huge + b"\n")

        task = await run_task(
            db, project, storage, limits, "csv.profile", {"file_id": str(source.id)}
        )

        assert task.status == TaskStatus.failed
        assert task.error is not None
        assert task.error["type"] == "input"
        assert task.error["message"].startswith("line 3:")

    async def test_a_record_without_a_line_break_fails_naming_its_row_before_it_is_read_whole(
        self,
        db: async_sessionmaker[AsyncSession],
        settings: Settings,
        project: Project,
        limits: TaskSettings,
    ) -> None:
        storage = _ReadCountingStorage.from_settings(settings)
        assert isinstance(storage, _ReadCountingStorage)
        endless = b"x" * (3 * MAX_RECORD_CHARS)  # neither a delimiter nor a line break
        source = await make_file(db, storage, project, b"a,b\n1,2\n" + endless)

        task = await run_task(
            db, project, storage, limits, "csv.profile", {"file_id": str(source.id)}
        )

        assert task.status == TaskStatus.failed
        assert task.error is not None
        assert task.error["type"] == "input"
        assert task.error["message"].startswith("row 3:")
        # The record's bytes up to the cap, and what the buffers read ahead: never the whole.
        assert storage.bytes_read() <= MAX_RECORD_CHARS + 2 * READ_CHUNK_BYTES

    async def test_quoted_line_breaks_do_not_make_a_record_longer_than_the_cap(
        self,
        db: async_sessionmaker[AsyncSession],
        settings: Settings,
        project: Project,
        limits: TaskSettings,
    ) -> None:
        storage = _ReadCountingStorage.from_settings(settings)
        assert isinstance(storage, _ReadCountingStorage)
        # Each line is short, but every one ends inside a quoted field: one endless record.
        endless = b'"\n' + b'","\n' * (MAX_RECORD_CHARS // 2)
        source = await make_file(db, storage, project, b"a,b\n" + endless)

        task = await run_task(
            db,
            project,
            storage,
            limits,
            "csv.profile",
            {"file_id": str(source.id), "has_header": False},
        )

        assert task.status == TaskStatus.failed
        assert task.error is not None
        assert task.error["type"] == "input"
        assert task.error["message"].startswith("row 2:")
        assert storage.bytes_read() <= MAX_RECORD_CHARS + 2 * READ_CHUNK_BYTES


class TestArchiveZip:
    async def test_the_files_are_zipped_byte_for_byte_into_a_new_file(
        self,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
        limits: TaskSettings,
    ) -> None:
        contents = [os.urandom(200_000), b"same name, other bytes", b""]
        files = [
            await make_file(db, storage, project, data, filename=name)
            for data, name in zip(contents, ["a.bin", "a.bin", "empty"], strict=True)
        ]

        task = await run_task(
            db,
            project,
            storage,
            limits,
            "archive.zip",
            {"file_ids": [str(file.id) for file in files], "filename": "bundle.zip"},
        )

        assert task.status == TaskStatus.succeeded, task.error
        assert task.result is not None
        output = await _output(db, task.result["file_id"])
        assert (output.filename, output.content_type) == ("bundle.zip", "application/zip")
        data = await object_bytes(storage, output.key)
        assert data is not None
        assert task.result["size"] == len(data) == output.size
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert archive.testzip() is None
            assert archive.namelist() == ["a.bin", "a (2).bin", "empty"]
            assert [archive.read(name) for name in archive.namelist()] == contents


class TestLargeResults:
    async def test_a_large_result_comes_back_through_a_presigned_result_url(
        self,
        client: httpx.AsyncClient,
        http: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
        owner: User,
        limits: TaskSettings,
    ) -> None:
        big = {"rows": ["x" * 100] * 1000}
        task = await run_task(db, project, storage, limits, "echo", big)

        response = await client.get(f"/v1/tasks/{task.id}", headers=auth_headers(owner))
        listed = await client.get(f"/v1/projects/{project.id}/tasks", headers=auth_headers(owner))

        body = response.json()
        assert body["status"] == "succeeded"
        assert body["result"] is None
        assert "X-Amz-Expires=900" in body["result_url"]
        assert (await http.get(body["result_url"])).json() == big
        assert listed.json()["items"][0]["result_url"]

    async def test_a_small_result_stays_inline(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
        owner: User,
        limits: TaskSettings,
    ) -> None:
        task = await run_task(db, project, storage, limits, "echo", {"a": 1})

        body = (await client.get(f"/v1/tasks/{task.id}", headers=auth_headers(owner))).json()

        assert (body["result"], body["result_url"]) == ({"a": 1}, None)


class TestDigest:
    async def test_the_digest_of_a_completed_upload_is_recorded_once(
        self, db: async_sessionmaker[AsyncSession], storage: Storage, project: Project
    ) -> None:
        data = os.urandom(2_000_000)
        file = await make_file(db, storage, project, data, sha256=None)

        first = await worker_side.digest(db, storage, file.id)
        second = await worker_side.digest(db, storage, file.id)

        assert first == hashlib.sha256(data).hexdigest()
        assert second is None
        assert (await _output(db, str(file.id))).sha256 == first

    async def test_a_missing_object_is_logged_not_raised(
        self, db: async_sessionmaker[AsyncSession], storage: Storage, project: Project
    ) -> None:
        file = await make_file(db, storage, project, b"x", sha256=None, upload=False)

        assert await worker_side.digest(db, storage, file.id) is None


class TestFileAccessFromAsyncCode:
    async def test_blocking_file_access_on_the_event_loop_is_refused(
        self, db: async_sessionmaker[AsyncSession], storage: Storage, project: Project
    ) -> None:
        files = TaskFiles(
            sessionmaker=db,
            storage=storage,
            project_id=project.id,
            task_id=uuid.uuid4(),
            loop=asyncio.get_running_loop(),
        )

        with pytest.raises(RuntimeError, match="sync handler"), files.open(uuid.uuid4()):
            pass

    async def test_outputs_of_a_failed_attempt_are_left_to_retention(
        self,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
    ) -> None:
        async with transaction(db) as session:
            task = Task(
                project_id=project.id, type="x", input={}, created_at=utc_now(), max_attempts=1
            )
            session.add(task)
        files = TaskFiles(
            sessionmaker=db,
            storage=storage,
            project_id=project.id,
            task_id=task.id,
            loop=asyncio.get_running_loop(),
        )

        def write_then_fail() -> None:
            with files.create(filename="half.bin", content_type="a/b") as out:
                out.write(b"partial")
                raise RuntimeError("crashed halfway")

        with pytest.raises(RuntimeError, match="halfway"):
            await asyncio.to_thread(write_then_fail)

        async with db() as session:
            [row] = (await session.scalars(select(File).where(File.task_id == task.id))).all()
        assert row.status == FileStatus.pending
        assert row.expires_at is not None
        assert await object_bytes(storage, row.key) is None
