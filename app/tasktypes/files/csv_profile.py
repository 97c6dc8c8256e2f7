"""`csv.profile`: rows, columns and per-column statistics of a CSV file, in one streaming pass."""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.tasktypes.base import TaskContext, TaskError
from app.tasktypes.filerefs import FileRef
from app.tasktypes.files.streams import BoundedLines, RecordTooLong

# Linear-time patterns: no two quantifiers may take the same digits (`\d+\.?\d*` backtracked
# quadratically on "111…1x", holding the GIL long enough for the attempt to lose its lease).
_INTEGER = re.compile(r"[+-]?\d+\Z")
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")
# Longer values are not numbers or datetimes here, and no pattern or parser sees them whole.
MAX_NUMBER_CHARS = 100
MAX_DATETIME_CHARS = 64
# A field longer than this is an error naming its line (the csv module's default is 128 KiB).
FIELD_SIZE_LIMIT = 64 * 1024
NULL_TOKENS = frozenset({"", "null", "none", "na", "n/a", "nan"})
_BOOLEANS = frozenset({"true", "false"})
MAX_COLUMNS = 500
# Per column, the most frequent values are counted with at most this many counters
# (Misra-Gries): exact while a column has no more distinct values, approximate beyond.
TOP_VALUE_COUNTERS = 200
MAX_VALUE_CHARS = 100
# A record (a line, or the lines a quoted field joins) longer than this is an error naming its
# row, found with this much of it in memory: a file without line breaks is never read whole.
MAX_RECORD_CHARS = 4 * 1024 * 1024
# Codecs `codecs.lookup` knows that no file's text is in: besides the bytes-to-bytes transforms
# (`base64_codec`, `zlib_codec`, `rot13`, …, not text encodings at all), domain-name labels (the
# `idna` decoder holds everything up to a dot), Python literal escapes and `undefined`.
_NOT_CHARSETS = frozenset({"idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined"})
_SAFE_INTEGER = 2**53


class CsvProfileInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: FileRef
    delimiter: str = Field(",", min_length=1, max_length=1)
    has_header: bool = True
    encoding: str = Field(
        "utf-8-sig",
        max_length=40,
        description="The file's character set, as a Python codec name (`utf-8`, `cp1252`, …).",
    )
    top_values: int = Field(5, ge=0, le=50, description="How many frequent values per column.")

    @field_validator("delimiter")
    @classmethod
    def _usable_delimiter(cls, value: str) -> str:
        if value in ('"', "\r", "\n") or value.isalnum():
            raise ValueError("must be a punctuation or whitespace character other than a quote")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_charset(cls, value: str) -> str:
        try:
            codec = codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        if not codec._is_text_encoding or codec.name in _NOT_CHARSETS:
            raise ValueError(f"{value!r} is not a character set a file can be in")
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
                if len(value) > MAX_DATETIME_CHARS:
                    raise ValueError("too long for a datetime")
                datetime.fromisoformat(value)
            except ValueError:
                self.could_be_datetime = False
        self._count(value[:MAX_VALUE_CHARS])

    def _add_number(self, value: str) -> None:
        number: float
        short = len(value) <= MAX_NUMBER_CHARS
        if short and self.could_be_integer and _INTEGER.match(value):
            number = int(value)
            if abs(number) > _SAFE_INTEGER:
                number = float(number)
        elif short and _DECIMAL.match(value) and math.isfinite(number := float(value)):
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
    records = rows = ragged = 0
    columns: list[_Column] = []
    with context.open_file(data.file_id) as source:
        text = io.TextIOWrapper(source.stream, encoding=data.encoding, newline="")
        lines = BoundedLines(text, max_chars=MAX_RECORD_CHARS)
        csv.field_size_limit(FIELD_SIZE_LIMIT)  # process-wide; this is its only reader
        reader = csv.reader(lines, delimiter=data.delimiter, strict=False)
        try:
            for record in reader:
                lines.next_record()
                records += 1
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
        except RecordTooLong as exc:
            raise TaskError(
                f"row {records + 1}: {exc} (a line break missing, or a quote never closed?)",
                type="input",
            ) from None
        finally:
            text.detach()  # the stream belongs to open_file
    return {
        "file_id": str(data.file_id),
        "rows": rows,
        "columns": len(columns),
        "ragged_rows": ragged,
        "fields": [column.summary(data.top_values) for column in columns],
    }
