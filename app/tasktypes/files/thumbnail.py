"""`image.thumbnail`: an image scaled into a new file of the project.

The source is bounded before it is decoded: its size in bytes (from its row) before any is read,
then its format and declared pixel size from its first `HEADER_BYTES` (read from the stream; the
rest is only read, into a temporary file, once those pass). Only `ACCEPTED_FORMATS` are decoded.
A JPEG decodes at 1/2, 1/4 or 1/8 scale when that still covers the thumbnail (libjpeg's draft
mode); other formats decode whole, so a pool process holds at most `MAX_SOURCE_PIXELS` pixels
(4 bytes each for RGBA: 200 MB) and the scaled copy.
"""

from __future__ import annotations

import enum
import io
import math
import shutil
import tempfile
from typing import IO, Any, Self

from PIL import ExifTags, Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.files.schemas import FileName
from app.files.storage import READ_CHUNK_BYTES
from app.tasktypes.base import TaskContext, TaskError
from app.tasktypes.filerefs import FileRef, InputFile
from app.tasktypes.files.streams import copy_stream

# Images and their outputs up to this size stay in memory, larger ones spill to a temporary file.
SPOOL_BYTES = 8 * 1024 * 1024
MAX_SOURCE_PIXELS = 50_000_000
# A larger source is refused before a byte of it is read (50 Mpx of 16-bit RGBA is 400 MB raw;
# an image this worker may decode compresses well below this).
MAX_SOURCE_BYTES = 256 * 1024 * 1024
MAX_THUMBNAIL_SIDE = 4096
# Each states its pixel size in its first bytes, and none runs another program (EPS starts
# Ghostscript) or may keep its directory at the end of the file (TIFF), out of a header's reach.
ACCEPTED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP")
# How much of the source the header check reads: enough for the metadata a JPEG carries before
# its frame header.
HEADER_BYTES = READ_CHUNK_BYTES
# Pillow's errors for input it cannot read.
_UNREADABLE = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,  # raised by some Pillow plugins for corrupt headers
    ValueError,
    EOFError,
)
# EXIF orientation -> what makes the image upright (as `ImageOps.exif_transpose` does).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


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


def _too_many_pixels(detail: str) -> TaskError:
    return TaskError(
        f"the image {detail}; at most {MAX_SOURCE_PIXELS} pixels (MAX_SOURCE_PIXELS) are read",
        type="input",
    )


def _open(fp: IO[bytes]) -> Image.Image:
    """Open (headers only) an image of an accepted format within the pixel bound."""
    try:
        image = Image.open(fp, formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        accepted = ", ".join(ACCEPTED_FORMATS)
        raise TaskError(f"not an image of an accepted format ({accepted})", type="input") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels("declares more pixels than Pillow's own bound") from None
    if image.width * image.height > MAX_SOURCE_PIXELS:
        image.close()
        raise _too_many_pixels(f"declares {image.width}x{image.height} pixels")
    return image


def _check_header(source: InputFile) -> bytes:
    """The source's first `HEADER_BYTES`, once its size, format and declared pixels pass."""
    if source.info.size > MAX_SOURCE_BYTES:
        raise TaskError(
            f"the file has {source.info.size} bytes; at most {MAX_SOURCE_BYTES} "
            "(MAX_SOURCE_BYTES) are read",
            type="input",
        )
    head = source.stream.read(HEADER_BYTES)
    try:
        _open(io.BytesIO(head)).close()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, *_UNREADABLE) as exc:
        raise TaskError(
            f"no image header in the first {HEADER_BYTES} bytes: {exc}", type="input"
        ) from None
    return head


def reduce_on_decode(image: Image.Image, size: tuple[int, int]) -> None:
    """Have a JPEG decode at the smallest of 1/2, 1/4, 1/8 scale still covering `size` (libjpeg
    scales as it decodes: the full-size pixels are never held); other formats ignore it."""
    image.draft(None, size)


def _scaled(image: Image.Image, data: ThumbnailInput) -> Image.Image:
    """The image fitted to the requested box and made upright by its EXIF orientation, which is
    applied to the small result, never to the full-size one."""
    upright = _UPRIGHT.get(image.getexif().get(ExifTags.Base.Orientation, 1))
    sideways = upright in (
        Image.Transpose.TRANSPOSE,
        Image.Transpose.TRANSVERSE,
        Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_270,
    )
    width, height = fit(image.size[::-1] if sideways else image.size, data.width, data.height)
    stored = (height, width) if sideways else (width, height)
    reduce_on_decode(image, stored)
    resized = image.resize(stored, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return resized.transpose(upright) if upright is not None else resized


def thumbnail(data: ThumbnailInput, context: TaskContext) -> dict[str, Any]:
    """Scale an image to fit `width` x `height` (aspect kept, never enlarged) into a new file."""
    with (
        context.open_file(data.file_id) as source,
        tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as original,
        tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as encoded,
    ):
        original.write(_check_header(source))
        copy_stream(source, original, context)
        original.seek(0)
        try:
            with _open(original) as image:
                context.raise_if_stopping()
                resized = _scaled(image, data)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning, *_UNREADABLE) as exc:
            raise TaskError(f"not an image this worker can read: {exc}", type="input") from None
        target = resized.size
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
