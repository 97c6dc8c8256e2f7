"""Log lines as the processes write them: JSON, formatted when emitted (context ids included)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import orjson

from app.core.logging import JsonFormatter, configure_logging


class JsonLogs(logging.Handler):
    """Every record of the process as its JSON line, formatted at once: the context variables
    (request, task and project ids) are read while they are still set."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def entries(self, logger: str | None = None) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.lines_of(logger)]

    def lines_of(self, logger: str | None = None) -> list[str]:
        return [
            line for line in self.lines if logger is None or orjson.loads(line)["logger"] == logger
        ]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@contextlib.contextmanager
def capture_json_logs(level: int = logging.DEBUG) -> Iterator[JsonLogs]:
    """Log as the processes do (`configure_logging` at `level`) for the block, and capture every
    line; the test process's own handlers come back afterwards."""
    root = logging.getLogger()
    handlers, previous = root.handlers[:], root.level
    configure_logging(logging.getLevelName(level))
    handler = JsonLogs()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.handlers[:] = handlers
        root.setLevel(previous)
        logging.captureWarnings(False)
