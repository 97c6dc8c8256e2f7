"""One HTTP attempt to a checked target: no redirects, no proxies, a capped read of the answer."""

from __future__ import annotations

import email.utils
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import httpx

from app.webhooks.targets import Target

EXCERPT_CHARS = 1000


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: a status (any status, 2xx or not) or an error, and how long it took."""

    status: int | None
    excerpt: str | None
    latency_ms: int
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    # One context per process (loading the CA bundle is slow); certificates are always verified.
    return httpx.create_ssl_context()


def excerpt(data: bytes) -> str:
    """Printable text of the answer's first bytes, storable in PostgreSQL (no NUL)."""
    return data.decode("utf-8", errors="replace").replace("\x00", "")[:EXCERPT_CHARS]


def retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delta seconds or an HTTP date); None if absent or odd."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


async def post(
    target: Target,
    *,
    body: bytes,
    headers: Mapping[str, str],
    timeout_s: float,
    max_bytes: int,
) -> Outcome:
    """POST `body` to the checked address; transport failures become an `Outcome` with an error.

    The caller bounds the whole attempt (resolution included) with its own deadline too.
    """
    request_headers = {
        **headers,
        "host": target.host_header,
        "accept-encoding": "identity",  # the excerpt is read raw: no decompression bombs
    }
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
    started = time.monotonic()
    try:
        async with (
            httpx.AsyncClient(
                verify=_tls(),
                trust_env=False,  # never through a proxy: it would resolve the name again
                follow_redirects=False,
                timeout=httpx.Timeout(timeout_s),
            ) as client,
            client.stream(
                "POST", target.url, content=body, headers=request_headers, extensions=extensions
            ) as response,
        ):
            received = bytearray()
            async for chunk in response.aiter_raw():
                received += chunk
                if len(received) >= max_bytes:
                    break  # the rest is not read: closing drops the connection
            return Outcome(
                status=response.status_code,
                excerpt=excerpt(bytes(received[:max_bytes])),
                latency_ms=_since(started),
                retry_after_s=retry_after(response.headers.get("retry-after")),
            )
    except httpx.TimeoutException:
        return Outcome(status=None, excerpt=None, latency_ms=_since(started), error="timeout")
    except httpx.HTTPError as exc:
        error = f"connection: {type(exc).__name__}: {exc}"[:300]
        return Outcome(status=None, excerpt=None, latency_ms=_since(started), error=error)


def _since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
