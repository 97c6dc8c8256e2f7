"""Security headers on every answer, built once per process; `RequestIdMiddleware` appends them
(the one place that adds headers to every response), choosing a set by path and scheme."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import Scope

Header = tuple[bytes, bytes]

# The API answers JSON and problem+json: nothing in an answer may load, run, frame or submit.
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

# FastAPI's /docs (Swagger UI) and /redoc pages: their scripts and styles come from the CDN that
# `fastapi.openapi.docs` names, Swagger UI starts from an inline script and both inject inline
# styles, ReDoc loads Google's fonts and its own logo and searches in a worker made from a blob;
# both fetch /openapi.json, and "try it out" calls the API, on this origin. Nothing else.
_DOCS_CDN = "https://cdn.jsdelivr.net"
DOCS_POLICY = "; ".join(
    (
        "default-src 'none'",
        f"script-src 'self' 'unsafe-inline' {_DOCS_CDN}",
        f"style-src 'self' 'unsafe-inline' {_DOCS_CDN} https://fonts.googleapis.com",
        "font-src https://fonts.gstatic.com",
        "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly",
        "connect-src 'self'",
        "worker-src blob:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    )
)


def console_policy(storage_origins: Iterable[str] = ()) -> str:
    """The web console's pages (`app/console/`): its own scripts, styles and images only, no inline
    script or style; it calls the API on this origin, and S3 (`storage_origins`) for presigned
    uploads and the downloads and thumbnails it shows."""
    storage = "".join(f" {origin}" for origin in storage_origins)
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src 'self' data:{storage}",  # data: for the shell's empty icon
            f"connect-src 'self'{storage}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


_COMMON: tuple[Header, ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)

# Answers are never stored by browsers or shared caches: they carry tenants' data and tokens.
# Sent unless the response set a Cache-Control of its own.
NO_STORE: Header = (b"cache-control", b"no-store")


class SecurityHeaders:
    """The headers each answer gets: the API's policy or, on the docs pages and the console's,
    theirs; and Strict-Transport-Security on answers to HTTPS requests (or on every one,
    `hsts_always`)."""

    def __init__(
        self,
        *,
        hsts_max_age_s: int = 0,
        hsts_always: bool = False,
        docs_paths: Iterable[str | None] = (),
        console_prefix: str | None = None,
        storage_origins: Iterable[str] = (),
    ) -> None:
        hsts: tuple[Header, ...] = ()
        if hsts_max_age_s > 0:
            hsts = ((b"strict-transport-security", f"max-age={hsts_max_age_s}".encode()),)
        api = (*_COMMON, (b"content-security-policy", API_POLICY.encode()))
        docs = (*_COMMON, (b"content-security-policy", DOCS_POLICY.encode()))
        self._api = (api + hsts, api + hsts if hsts_always else api)  # [https, http]
        self._docs = (docs + hsts, docs + hsts if hsts_always else docs)
        self._docs_paths = frozenset(path for path in docs_paths if path)
        console = (*_COMMON, (b"content-security-policy", console_policy(storage_origins).encode()))
        self._console = (console + hsts, console + hsts if hsts_always else console)
        self._console_prefix = console_prefix or None
        self._by_path = bool(self._docs_paths) or self._console_prefix is not None

    def of(self, scope: Scope) -> tuple[Header, ...]:
        """The set for this request (a lookup, nothing built)."""
        plain = 0 if scope.get("scheme") == "https" else 1
        if self._by_path:
            path: str = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            if path in self._docs_paths:
                return self._docs[plain]
            prefix = self._console_prefix
            if prefix is not None and path.startswith(prefix):
                rest = path[len(prefix) :]
                if not rest or rest[0] == "/":
                    return self._console[plain]
        return self._api[plain]
