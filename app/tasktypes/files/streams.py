"""What the file task types share: copying a stream in chunks, with stop points and progress;
reading text in lines of bounded length."""

from __future__ import annotations

from typing import Any, TextIO

from app.files.storage import READ_CHUNK_BYTES
from app.tasktypes.base import TaskContext
from app.tasktypes.filerefs import InputFile


def copy_stream(source: InputFile, target: Any, context: TaskContext) -> int:
    """Copy a stream in chunks, honouring cancellation; returns the bytes copied."""
    copied = 0
    while chunk := source.stream.read(READ_CHUNK_BYTES):
        context.raise_if_stopping()
        target.write(chunk)
        copied += len(chunk)
        if source.info.size:
            context.report_progress(copied / source.info.size)
    return copied


class RecordTooLong(Exception):
    """A record passed its reader's `max_chars` (the rest of it was never read)."""


class BoundedLines:
    """The lines of a text stream for `csv.reader`, with a bound on each record: a record (one
    line, or the lines a quoted field joins) longer than `max_chars` characters raises
    `RecordTooLong` once `max_chars` + 1 of them are read, however long it really is.

    Plain line iteration has no bound: a file without line breaks would become one string of its
    whole size. The reader of the records calls `next_record` after each one it gets.
    """

    def __init__(self, text: TextIO, *, max_chars: int) -> None:
        self._text = text
        self._max_chars = max_chars
        self._left = max_chars

    def __iter__(self) -> BoundedLines:
        return self

    def __next__(self) -> str:
        # One character more than the record may still take: getting it means the record is
        # too long, and a line cut short never reaches the parser.
        line = self._text.readline(self._left + 1)
        if not line:
            raise StopIteration
        if len(line) > self._left:
            raise RecordTooLong(f"longer than {self._max_chars} characters")
        self._left -= len(line)
        return line

    def next_record(self) -> None:
        """The record read so far is complete: the next one may take `max_chars` again."""
        self._left = self._max_chars
