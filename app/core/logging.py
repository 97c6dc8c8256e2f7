"""Structured logs: one JSON object per line with the request, task and project ids in context."""

from __future__ import annotations

import contextlib
import logging
import sys
import uuid
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

import orjson

from app.core.context import project_id_var, request_id_var, task_id_var

# One line per HTTP request, written by `metrics.MetricsMiddleware`; it replaces uvicorn's own.
access_log = logging.getLogger("taskgate.access")
# Where the request's scope names its authenticated caller for that line (`note_caller`).
_CALLER_KEY = "taskgate.caller"

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged as a field.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, var in (
            ("request_id", request_id_var),
            ("task_id", task_id_var),
            ("project_id", project_id_var),
        ):
            value = var.get()
            if value is not None:
                entry[key] = value
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """Route every logger (ours, uvicorn's, celery's) to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    if json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # Neither format names the caller's source line, thread or process: skip finding them for
    # every record (the logging HOWTO's "Optimization"; a stack walk per access line).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # `taskgate.access` has the request's line, with the route template instead of the query.
    logging.getLogger("uvicorn.access").disabled = True
    # Python's warnings (Celery's own among them) as log lines too, not plain text on stderr.
    logging.captureWarnings(True)


def note_caller(scope: MutableMapping[str, Any], *, kind: str, caller_id: uuid.UUID) -> None:
    """Name the authenticated caller (`kind` "user" or "api_key") in the request's log line."""
    scope[_CALLER_KEY] = (f"{kind}_id", str(caller_id))


def log_request(scope: Mapping[str, Any], *, route: str, status: int, duration_s: float) -> None:
    """The request's one access line: method, route template, status, duration, the caller and
    the path's project. Never the raw path, the query string or a header."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    fields: dict[str, Any] = {
        "method": scope["method"],
        "route": route,
        "status": status,
        "duration_ms": round(duration_s * 1000, 2),
    }
    if (caller := scope.get(_CALLER_KEY)) is not None:
        fields[caller[0]] = caller[1]
    project_id = scope.get("path_params", {}).get("project_id")
    if isinstance(project_id, str):
        # Not an id: the request is a 422, and what the path holds is the client's text.
        with contextlib.suppress(ValueError):
            fields["project_id"] = str(uuid.UUID(project_id))
    access_log.info("%s %s %s", scope["method"], route, status, extra=fields)
