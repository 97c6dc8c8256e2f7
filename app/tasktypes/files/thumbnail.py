"""`image.thumbnail`: an image scaled into a new file of the project."""

from __future__ import annotations

import enum
import math
import shutil
import tempfile
from typing import Any, Self

from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.files.schemas import FileName
from app.files.storage import READ_CHUNK_BYTES
from app.tasktypes.base import TaskContext, TaskError
from app.tasktypes.filerefs import FileRef
from app.tasktypes.files.streams import copy_stream

# Images and their outputs up to this size stay in memory, larger ones spill to a temporary file.
SPOOL_BYTES = 8 * 1024 * 1024
MAX_SOURCE_PIXELS = 50_000_000
MAX_THUMBNAIL_SIDE = 4096


class ImageFormat(enum.StrEnum):
    png = "png"
    jpeg = "jpeg"
    webp = "webp"


_MEDIA_TYPES = {
    ImageFormat.png: "image/png",
    ImageFormat.jpeg: "image/jpeg",
    ImageFormat.webp: "image/webp",
}


class ThumbnailInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: FileRef
    width: int | None = Field(None, ge=1, le=MAX_THUMBNAIL_SIDE, description="Largest width.")
    height: int | None = Field(None, ge=1, le=MAX_THUMBNAIL_SIDE, description="Largest height.")
    format: ImageFormat = ImageFormat.png
    filename: FileName | None = Field(None, description="Default: `<name>.thumbnail.<format>`.")

    @model_validator(mode="after")
    def _a_bound(self) -> Self:
        if self.width is None and self.height is None:
            raise ValueError("give width, height or both")
        return self


def fit(size: tuple[int, int], width: int | None, height: int | None) -> tuple[int, int]:
    """The largest size within `width` x `height` with the aspect ratio of `size`, never larger
    than `size` itself."""
    source_width, source_height = size
    scale = min(
        1.0,
        width / source_width if width else math.inf,
        height / source_height if height else math.inf,
    )
    return max(1, round(source_width * scale)), max(1, round(source_height * scale))


def _thumbnail_name(source: str, image_format: ImageFormat) -> str:
    stem = source.rsplit(".", 1)[0] if "." in source.strip(".") else source
    return f"{stem[:200]}.thumbnail.{image_format.value}"


def thumbnail(data: ThumbnailInput, context: TaskContext) -> dict[str, Any]:
    """Scale an image to fit `width` x `height` (aspect kept, never enlarged) into a new file."""
    with (
        context.open_file(data.file_id) as source,
        tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as original,
        tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as encoded,
    ):
        copy_stream(source, original, context)
        original.seek(0)
        try:
            with Image.open(original) as image:
                if image.width * image.height > MAX_SOURCE_PIXELS:
                    raise TaskError(
                        f"the image has {image.width}x{image.height} pixels; at most "
                        f"{MAX_SOURCE_PIXELS} are read",
                        type="input",
                    )
                oriented = ImageOps.exif_transpose(image)
                context.raise_if_stopping()
                target = fit(oriented.size, data.width, data.height)
                resized = oriented.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
        except (
            UnidentifiedImageError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
            OSError,
            SyntaxError,  # raised by some Pillow plugins for corrupt headers
        ) as exc:
            raise TaskError(f"not an image this worker can read: {exc}", type="input") from None
        if data.format is ImageFormat.jpeg and resized.mode not in ("RGB", "L"):
            resized = resized.convert("RGB")
        elif resized.mode not in ("RGB", "RGBA", "L", "LA"):
            resized = resized.convert("RGBA")
        options: dict[str, Any] = {"optimize": True}
        if data.format is not ImageFormat.png:
            options["quality"] = 85
        resized.save(encoded, format=data.format.value.upper(), **options)
        encoded.seek(0)
        filename = data.filename or _thumbnail_name(source.info.filename, data.format)
        with context.create_file(filename=filename, content_type=_MEDIA_TYPES[data.format]) as out:
            shutil.copyfileobj(encoded, out, READ_CHUNK_BYTES)
    assert out.info is not None  # noqa: S101 (set when the block ends)
    return {
        "file_id": str(out.info.id),
        "filename": out.info.filename,
        "content_type": out.info.content_type,
        "size": out.info.size,
        "sha256": out.info.sha256,
        "width": target[0],
        "height": target[1],
        "format": data.format.value,
        "source_file_id": str(data.file_id),
    }
