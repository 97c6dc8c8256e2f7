"""A circuit breaker for a dependency that may go away (Redis): after a failure it stays open for
`open_s`, so callers skip the dependency instead of each paying a timeout; the first call after
that tries it again (half-open), and a failure opens it once more."""

from __future__ import annotations

import time


class Breaker:
    def __init__(self, open_s: float) -> None:
        self.open_s = open_s
        self._open_until = 0.0

    @property
    def is_open(self) -> bool:
        """True while the dependency failed less than `open_s` ago."""
        return time.monotonic() < self._open_until

    @property
    def open_for_s(self) -> float:
        """Seconds until it half-opens (0 when closed)."""
        return max(0.0, self._open_until - time.monotonic())

    def trip(self) -> None:
        """The dependency just failed."""
        self._open_until = time.monotonic() + self.open_s
