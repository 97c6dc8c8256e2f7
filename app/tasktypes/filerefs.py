"""Files in task inputs and outputs: `FileRef` fields, and what handlers may do with files.

An input model declares `file_id: FileRef` (or `list[FileRef]`, or nested models holding them).
At submit the API checks that every referenced file exists in the task's project; on the worker
the handler opens them with `context.open_file(file_id)` and writes new files with
`context.create_file(...)`, both scoped to the task's project. Handlers never see bucket keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

Location = tuple[str | int, ...]


class FileRef(uuid.UUID):
    """The id of a file in the task's own project (a UUID string in JSON)."""

    __slots__ = ()

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            lambda value: cls(int=value.int), handler(uuid.UUID)
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.setdefault(
            "description", "The id of a file in the task's project (`GET /v1/projects/{id}/files`)."
        )
        return json_schema


def collect_file_refs(value: Any, location: Location = ()) -> Iterator[tuple[Location, FileRef]]:
    """Every `FileRef` in a parsed input, with where it is (`("files", 2)`), in field order."""
    if isinstance(value, FileRef):
        yield location, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from collect_file_refs(getattr(value, name), (*location, name))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from collect_file_refs(item, (*location, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from collect_file_refs(item, (*location, str(key)))


@dataclass(frozen=True)
class FileInfo:
    """What a handler knows about a file."""

    id: uuid.UUID
    filename: str
    content_type: str
    size: int
    sha256: str | None


@dataclass(frozen=True)
class InputFile:
    """A file opened for reading: its metadata and a buffered binary stream from S3."""

    info: FileInfo
    stream: BinaryIO
    # How many bytes have come from S3 so far (read ahead of `stream`), for progress.
    bytes_read: Callable[[], int]


class OutputFile(Protocol):
    """A new file being written; `info` is set once its `create_file` block has ended."""

    id: uuid.UUID
    info: FileInfo | None

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class FileAccess(Protocol):
    """Files of one project, for sync handlers (blocking calls, made from the handler's thread)."""

    def open(self, file_id: uuid.UUID) -> AbstractContextManager[InputFile]: ...

    def create(self, *, filename: str, content_type: str) -> AbstractContextManager[OutputFile]: ...
