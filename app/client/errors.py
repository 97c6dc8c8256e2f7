"""The CLI's failures and the exit code each one ends a command with."""

from __future__ import annotations

import enum
from typing import Any


class ExitCode(enum.IntEnum):
    ok = 0
    api_error = 1  # the API answered with an error, or the task ended failed or canceled
    usage = 2  # a bad flag or argument, a missing key or project, an unusable profile
    network = 3  # no answer: refused, reset, timed out, a name that does not resolve
    unfinished = 4  # gave up waiting; the task is still queued or running


class ConfigError(Exception):
    """The flags, environment and profile do not say how to connect: a usage error."""


class CommandError(Exception):
    """What the API answered rules the command out (a file not ready yet, a download whose
    digest does not match), or a local file cannot be written: exit 1."""


class Unreachable(Exception):
    """No answer from the API or from storage."""


class ApiError(Exception):
    """An answer that is not a success, shown as `<title>: <detail> (request id …)`."""

    def __init__(
        self, status: int, problem: dict[str, Any] | None, text: str, request_id: str | None
    ) -> None:
        self.status = status
        self.problem = problem
        self.request_id = (problem or {}).get("request_id") or request_id
        super().__init__(self._describe(text))

    def _describe(self, text: str) -> str:
        if self.problem is None:
            excerpt = " ".join(text.split())[:300]
            message = f"HTTP {self.status}" + (f": {excerpt}" if excerpt else "")
        else:
            title = self.problem.get("title") or f"HTTP {self.status}"
            detail = self.problem.get("detail")
            message = f"{title}: {detail}" if detail and detail != title else str(title)
            for error in self.problem.get("errors") or []:
                if isinstance(error, dict):
                    where = ".".join(str(part) for part in error.get("loc") or [])
                    message += f"; {where}: {error.get('msg')}"
        return message + (f" (request id {self.request_id})" if self.request_id else "")
