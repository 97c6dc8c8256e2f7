"""Built-in task types that work on files: `file.checksum`, `image.thumbnail`, `csv.profile`,
`archive.zip`.

Every handler is sync (it runs in a thread), streams its inputs from S3 in 1 MiB reads and writes
outputs as multipart uploads, so a worker's memory stays flat whatever the file size. Inputs are
`FileRef`s of the task's project; outputs are new files of the project, returned as `file_id`.
"""

from __future__ import annotations

import codecs
import csv
import enum
import hashlib
import io
import math
import re
import shutil
import tempfile
import zipfile
from datetime import UTC, datetime
from typing import Any, Literal, Self

from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.files.schemas import FileName
from app.files.storage import READ_CHUNK_BYTES, StorageError
from app.tasktypes.base import TaskContext, TaskError, TaskType
from app.tasktypes.filerefs import FileRef, InputFile

# Images and their outputs up to this size stay in memory, larger ones spill to a temporary file.
SPOOL_BYTES = 8 * 1024 * 1024
MAX_SOURCE_PIXELS = 50_000_000
MAX_THUMBNAIL_SIDE = 4096


def _copy(source: InputFile, target: Any, context: TaskContext) -> int:
    """Copy a stream in chunks, honouring cancellation; returns the bytes copied."""
    copied = 0
    while chunk := source.stream.read(READ_CHUNK_BYTES):
        context.raise_if_stopping()
        target.write(chunk)
        copied += len(chunk)
        if source.info.size:
            context.report_progress(copied / source.info.size)
    return copied


# --- file.checksum -----------------------------------------------------------------------------


class ChecksumInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: FileRef


def checksum(data: ChecksumInput, context: TaskContext) -> dict[str, Any]:
    """SHA-256, MD5 and size of a file, read once in 1 MiB chunks."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    size = 0
    with context.open_file(data.file_id) as source:
        total = source.info.size
        while chunk := source.stream.read(READ_CHUNK_BYTES):
            context.raise_if_stopping()
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
            if total:
                context.report_progress(size / total)
    return {
        "file_id": str(data.file_id),
        "size": size,
        "sha256": sha256.hexdigest(),
        "md5": md5.hexdigest(),
    }


# --- image.thumbnail ---------------------------------------------------------------------------


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
        _copy(source, original, context)
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


# --- csv.profile -------------------------------------------------------------------------------

_INTEGER = re.compile(r"[+-]?\d+\Z")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
NULL_TOKENS = frozenset({"", "null", "none", "na", "n/a", "nan"})
_BOOLEANS = frozenset({"true", "false"})
MAX_COLUMNS = 500
# Per column, the most frequent values are counted with at most this many counters
# (Misra-Gries): exact while a column has no more distinct values, approximate beyond.
TOP_VALUE_COUNTERS = 200
MAX_VALUE_CHARS = 100
_SAFE_INTEGER = 2**53


class CsvProfileInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: FileRef
    delimiter: str = Field(",", min_length=1, max_length=1)
    has_header: bool = True
    encoding: str = Field("utf-8-sig", max_length=40, description="A Python codec name.")
    top_values: int = Field(5, ge=0, le=50, description="How many frequent values per column.")

    @field_validator("delimiter")
    @classmethod
    def _usable_delimiter(cls, value: str) -> str:
        if value in ('"', "\r", "\n") or value.isalnum():
            raise ValueError("must be a punctuation or whitespace character other than a quote")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value


class _Column:
    """Streaming statistics of one column, in constant memory."""

    __slots__ = (
        "could_be_boolean",
        "could_be_datetime",
        "could_be_float",
        "could_be_integer",
        "count",
        "counters",
        "maximum",
        "minimum",
        "name",
        "nulls",
        "overflowed",
        "total",
    )

    def __init__(self, name: str, nulls: int = 0) -> None:
        self.name = name
        self.count = 0
        self.nulls = nulls
        self.could_be_integer = self.could_be_float = True
        self.could_be_boolean = self.could_be_datetime = True
        self.minimum: float | None = None
        self.maximum: float | None = None
        self.total: float = 0
        self.counters: dict[str, int] = {}
        self.overflowed = False

    def add(self, raw: str) -> None:
        value = raw.strip()
        if len(value) <= 4 and value.lower() in NULL_TOKENS:
            self.nulls += 1
            return
        self.count += 1
        if self.could_be_float:
            self._add_number(value)
        if self.could_be_boolean and value.lower() not in _BOOLEANS:
            self.could_be_boolean = False
        if self.could_be_datetime:
            try:
                datetime.fromisoformat(value)
            except ValueError:
                self.could_be_datetime = False
        self._count(value[:MAX_VALUE_CHARS])

    def _add_number(self, value: str) -> None:
        number: float
        if self.could_be_integer and _INTEGER.match(value):
            number = int(value)
            if abs(number) > _SAFE_INTEGER:
                number = float(number)
        elif _DECIMAL.match(value) and math.isfinite(number := float(value)):
            self.could_be_integer = False
        else:
            self.could_be_integer = self.could_be_float = False
            self.minimum = self.maximum = None
            return
        self.total += number
        if self.minimum is None or number < self.minimum:
            self.minimum = number
        if self.maximum is None or number > self.maximum:
            self.maximum = number

    def _count(self, value: str) -> None:
        if "\x00" in value:  # PostgreSQL's jsonb cannot hold NUL characters
            value = value.replace("\x00", "\ufffd")
        counters = self.counters
        if value in counters:
            counters[value] += 1
        elif len(counters) < TOP_VALUE_COUNTERS:
            counters[value] = 1
        else:  # Misra-Gries: one decrement for all (amortized O(1) per value)
            self.overflowed = True
            for key, seen in list(counters.items()):
                if seen == 1:
                    del counters[key]
                else:
                    counters[key] = seen - 1

    @property
    def type(self) -> str:
        if not self.count:
            return "empty"
        if self.could_be_integer and self.could_be_float:
            return "integer"
        if self.could_be_float:
            return "float"
        if self.could_be_boolean:
            return "boolean"
        if self.could_be_datetime:
            return "datetime"
        return "string"

    def summary(self, top: int) -> dict[str, Any]:
        column_type = self.type
        numeric = column_type in ("integer", "float")
        ranked = sorted(self.counters.items(), key=lambda item: (-item[1], item[0]))[:top]
        return {
            "name": self.name,
            "type": column_type,
            "count": self.count,
            "nulls": self.nulls,
            "min": self.minimum if numeric else None,
            "max": self.maximum if numeric else None,
            "mean": self.total / self.count if numeric else None,
            "distinct": None if self.overflowed else len(self.counters),
            "top_values": [{"value": value, "count": count} for value, count in ranked],
            # Beyond TOP_VALUE_COUNTERS distinct values the counts are lower bounds.
            "top_values_exact": not self.overflowed,
        }


def csv_profile(data: CsvProfileInput, context: TaskContext) -> dict[str, Any]:
    """Rows, columns, a type per column, nulls, min/max/mean of numbers and frequent values,
    in one streaming pass over the file."""
    rows = ragged = 0
    columns: list[_Column] = []
    with context.open_file(data.file_id) as source:
        text = io.TextIOWrapper(source.stream, encoding=data.encoding, newline="")
        reader = csv.reader(text, delimiter=data.delimiter, strict=False)
        try:
            for record in reader:
                if not columns:
                    if len(record) > MAX_COLUMNS:
                        raise TaskError(f"more than {MAX_COLUMNS} columns", type="input")
                    names = record if data.has_header else []
                    columns = [
                        _Column(
                            name.strip()[:MAX_VALUE_CHARS].replace("\x00", "\ufffd")
                            or f"column_{index + 1}"
                        )
                        for index, name in enumerate(names or [""] * len(record))
                    ]
                    if data.has_header:
                        continue
                rows += 1
                if len(record) != len(columns):
                    ragged += 1
                for column, value in zip(columns, record, strict=False):
                    column.add(value)
                for column in columns[len(record) :]:
                    column.nulls += 1
                if rows % 5000 == 0:
                    context.raise_if_stopping()
                    if source.info.size:
                        context.report_progress(source.bytes_read() / source.info.size)
        except UnicodeDecodeError as exc:
            raise TaskError(f"the file is not valid {data.encoding}: {exc}", type="input") from None
        except csv.Error as exc:
            raise TaskError(f"line {reader.line_num}: {exc}", type="input") from None
        finally:
            text.detach()  # the stream belongs to open_file
    return {
        "file_id": str(data.file_id),
        "rows": rows,
        "columns": len(columns),
        "ragged_rows": ragged,
        "fields": [column.summary(data.top_values) for column in columns],
    }


# --- archive.zip -------------------------------------------------------------------------------


class ZipInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_ids: list[FileRef] = Field(min_length=1, max_length=100)
    filename: FileName = "archive.zip"
    compression: Literal["deflate", "store"] = "deflate"

    @field_validator("file_ids")
    @classmethod
    def _distinct(cls, value: list[FileRef]) -> list[FileRef]:
        if len(set(value)) != len(value):
            raise ValueError("each file may appear once")
        return value


def _entry_name(filename: str, taken: set[str]) -> str:
    """The file's name, made unique within the archive (`a.txt`, `a (2).txt`, …)."""
    stem, dot, suffix = filename.rpartition(".")
    if not stem:
        stem, dot, suffix = filename, "", ""
    name, number = filename, 1
    while name in taken:
        number += 1
        name = f"{stem} ({number}){dot}{suffix}"
    taken.add(name)
    return name


def archive_zip(data: ZipInput, context: TaskContext) -> dict[str, Any]:
    """Several files of the project into one zip file, streamed straight into S3."""
    compression = zipfile.ZIP_DEFLATED if data.compression == "deflate" else zipfile.ZIP_STORED
    stamp = datetime.now(UTC).timetuple()[:6]
    entries: list[dict[str, Any]] = []
    taken: set[str] = set()
    with (
        context.create_file(filename=data.filename, content_type="application/zip") as out,
        zipfile.ZipFile(out, "w", compression=compression, allowZip64=True) as archive,
    ):
        for index, file_id in enumerate(data.file_ids):
            with context.open_file(file_id) as source:
                entry = zipfile.ZipInfo(_entry_name(source.info.filename, taken), stamp)
                entry.compress_type = compression
                large = source.info.size >= zipfile.ZIP64_LIMIT
                with archive.open(entry, "w", force_zip64=large) as target:
                    size = _copy(source, target, context)
            entries.append({"file_id": str(file_id), "name": entry.filename, "size": size})
            context.report_progress((index + 1) / len(data.file_ids))
    assert out.info is not None  # noqa: S101 (set when the block ends)
    return {
        "file_id": str(out.info.id),
        "filename": out.info.filename,
        "size": out.info.size,
        "sha256": out.info.sha256,
        "entries": entries,
    }


FILE_TYPES = (
    TaskType(
        name="file.checksum",
        description="SHA-256, MD5 and size of a file (`file_id`), streamed in constant memory.",
        input_model=ChecksumInput,
        handler=checksum,
        default_timeout_s=3600,
        retry_on=(StorageError,),
    ),
    TaskType(
        name="image.thumbnail",
        description="Scale an image (PNG, JPEG, WebP, GIF, …) to fit `width`/`height` into a new "
        "file of `format` (png, jpeg, webp); returns its `file_id`.",
        input_model=ThumbnailInput,
        handler=thumbnail,
        default_timeout_s=300,
        retry_on=(StorageError,),
    ),
    TaskType(
        name="csv.profile",
        description="Profile a CSV file: rows, columns, a type per column, nulls, min/max/mean "
        "of numbers and the most frequent values, in one streaming pass.",
        input_model=CsvProfileInput,
        handler=csv_profile,
        default_timeout_s=3600,
        retry_on=(StorageError,),
    ),
    TaskType(
        name="archive.zip",
        description="Zip several files (`file_ids`) into one new file; returns its `file_id`.",
        input_model=ZipInput,
        handler=archive_zip,
        default_timeout_s=3600,
        retry_on=(StorageError,),
    ),
)
