"""`image.thumbnail` bounds its input before decoding it: formats outside the accepted list and
images declaring too many pixels fail the task as input errors after their first bytes, never
copied whole; normal images still scale (JPEGs at a reduced decoding scale, made upright)."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings, TaskSettings
from app.files.models import File
from app.files.storage import READ_CHUNK_BYTES
from app.projects.models import Project
from app.tasks.models import Task, TaskStatus
from app.tasktypes.files.thumbnail import HEADER_BYTES, MAX_SOURCE_PIXELS
from tests.integration.files.conftest import make_file, object_bytes, run_task
from tests.integration.files.test_task_types import _ReadCountingStorage

# Past what the header check and the stream's read-ahead take: reading it all shows.
PADDING = b"\0" * (6 * 1024 * 1024)
# What a refused source may cost: its header and one buffer read ahead, never the rest.
READ_BOUND = HEADER_BYTES + READ_CHUNK_BYTES


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header declaring `width` x `height` RGBA pixels, with a tiny body."""
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )


def _eps() -> bytes:
    return (
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n%%EndComments\n"
        b"newpath 0 0 moveto 100 100 lineto stroke showpage\n%%EOF\n"
    )


def _encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


@pytest.fixture
def counting(settings: Settings) -> _ReadCountingStorage:
    storage = _ReadCountingStorage.from_settings(settings)
    assert isinstance(storage, _ReadCountingStorage)
    return storage


async def _thumbnail(
    db: async_sessionmaker[AsyncSession],
    storage: _ReadCountingStorage,
    project: Project,
    limits: TaskSettings,
    data: bytes,
    **input: object,
) -> tuple[Task, File]:
    # sha256 unset (a presigned upload whose digest has not run): a task reading it whole
    # records it, so an unset one after the task also says the file was not read whole.
    source = await make_file(db, storage, project, data, sha256=None)
    task = await run_task(
        db, project, storage, limits, "image.thumbnail", {"file_id": str(source.id), **input}
    )
    async with db() as session:
        after = await session.get_one(File, source.id, populate_existing=True)
    return task, after


class TestRefusedBeforeDecoding:
    @pytest.mark.parametrize(
        "data",
        [
            pytest.param(_eps() + PADDING, id="eps"),
            pytest.param(_encoded(Image.new("RGB", (64, 48)), "PPM") + PADDING, id="ppm"),
            pytest.param(_encoded(Image.new("RGB", (64, 48)), "TIFF") + PADDING, id="tiff"),
        ],
    )
    async def test_a_format_outside_the_accepted_list_fails_as_input_unread(
        self,
        db: async_sessionmaker[AsyncSession],
        counting: _ReadCountingStorage,
        project: Project,
        limits: TaskSettings,
        data: bytes,
    ) -> None:
        task, source = await _thumbnail(db, counting, project, limits, data, width=16)

        assert task.status == TaskStatus.failed
        assert task.error == {
            "type": "input",
            "message": "not an image of an accepted format (PNG, JPEG, GIF, WEBP, BMP)",
        }
        assert counting.bytes_read() <= READ_BOUND
        assert source.sha256 is None

    @pytest.mark.parametrize(
        ("width", "height", "detail"),
        [
            (8000, 8000, "declares 8000x8000 pixels"),  # over our bound, under Pillow's
            (100_000, 100_000, "declares more pixels than Pillow's own bound"),
        ],
    )
    async def test_a_png_declaring_too_many_pixels_fails_naming_the_limit_unread(
        self,
        db: async_sessionmaker[AsyncSession],
        counting: _ReadCountingStorage,
        project: Project,
        limits: TaskSettings,
        width: int,
        height: int,
        detail: str,
    ) -> None:
        data = _png_declaring(width, height) + PADDING

        task, source = await _thumbnail(db, counting, project, limits, data, width=16)

        assert task.status == TaskStatus.failed
        assert task.error == {
            "type": "input",
            "message": f"the image {detail}; at most {MAX_SOURCE_PIXELS} pixels "
            "(MAX_SOURCE_PIXELS) are read",
        }
        assert counting.bytes_read() <= READ_BOUND
        assert source.sha256 is None


class TestAcceptedImages:
    @pytest.mark.parametrize("image_format", ["PNG", "JPEG", "GIF", "WEBP", "BMP"])
    async def test_each_accepted_format_scales(
        self,
        db: async_sessionmaker[AsyncSession],
        counting: _ReadCountingStorage,
        project: Project,
        limits: TaskSettings,
        image_format: str,
    ) -> None:
        data = _encoded(Image.new("RGB", (320, 240), (200, 30, 30)), image_format)

        task, source = await _thumbnail(db, counting, project, limits, data, width=32)

        assert task.status == TaskStatus.succeeded, task.error
        assert task.result is not None
        assert (task.result["width"], task.result["height"]) == (32, 24)
        assert source.sha256 is not None  # read whole: the digest was recorded

    async def test_a_large_sideways_jpeg_comes_out_upright_at_the_size_asked(
        self,
        db: async_sessionmaker[AsyncSession],
        counting: _ReadCountingStorage,
        project: Project,
        limits: TaskSettings,
    ) -> None:
        exif = Image.Exif()
        exif[0x0112] = 6  # stored landscape, shown rotated a quarter turn: portrait
        data = _encoded(Image.new("RGB", (4000, 3000), (10, 120, 200)), "JPEG", exif=exif)

        task, _ = await _thumbnail(db, counting, project, limits, data, width=150)

        assert task.status == TaskStatus.succeeded, task.error
        assert task.result is not None
        assert (task.result["width"], task.result["height"]) == (150, 200)
        async with db() as session:
            output = await session.get_one(File, task.result["file_id"])
        encoded = await object_bytes(counting, output.key)
        assert encoded is not None
        with Image.open(io.BytesIO(encoded)) as image:
            assert image.size == (150, 200)
