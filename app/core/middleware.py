"""ASGI middleware: request ids on every request and response, and the security headers; request
bodies bounded per route; the client's address behind trusted proxies."""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable, Mapping, Sequence

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.context import request_id_var
from app.core.headers import NO_STORE, SecurityHeaders

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_NAME = REQUEST_ID_HEADER.encode()
_CACHE_CONTROL = NO_STORE[0]
# A client's id is kept only if it is short and plain, so it is safe in logs and headers.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")  # matched whole (fullmatch)


# Headers a dependency adds to whatever response the request ends with (an error's included):
# a list of (name, value) under this scope key, sent by `RequestIdMiddleware`.
RESPONSE_HEADERS = "taskgate.response_headers"


def add_response_headers(scope: Scope, headers: Sequence[tuple[bytes, bytes]]) -> None:
    scope.setdefault(RESPONSE_HEADERS, []).extend(headers)


def new_request_id() -> str:
    return uuid.uuid4().hex


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RequestIdMiddleware:
    """Keep the caller's `X-Request-ID` when sane (and, with `trusted_proxies`, sent by one of
    them), else make one; echo it and expose it to logs. Every response also gets the security
    headers (`core/headers.py`, precomputed) and those dependencies added (`add_response_headers`).

    Mounted outside Starlette's `ServerErrorMiddleware` (`main.TaskgateAPI`), so the id is still
    set while a 500 is rendered, and that response carries it and the headers too."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_proxies: Sequence[Network] = (),
        security_headers: SecurityHeaders | None = None,
    ) -> None:
        self.app = app
        self.trusted_proxies = tuple(trusted_proxies)
        self.security_headers = security_headers or SecurityHeaders()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next(
            (
                value.decode("latin-1")
                for name, value in scope["headers"]
                if name.decode("latin-1").lower() == REQUEST_ID_HEADER
            ),
            "",
        )
        keep = bool(incoming) and _SANE_REQUEST_ID.fullmatch(incoming) is not None
        if keep and self.trusted_proxies:
            keep = _peer_in(scope, self.trusted_proxies)
        request_id = incoming if keep else new_request_id()
        token = request_id_var.set(request_id)
        # Chosen now: a mount (the console's) rewrites the scope's root path as it routes.
        security_headers = self.security_headers.of(scope)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = []
                cached = False
                for name, value in message.get("headers", []):
                    lowered = name.lower()
                    if lowered == _REQUEST_ID_NAME:
                        continue
                    cached = cached or lowered == _CACHE_CONTROL
                    headers.append((name, value))
                headers.append((_REQUEST_ID_NAME, request_id.encode()))
                headers.extend(security_headers)
                if not cached:
                    headers.append(NO_STORE)
                headers.extend(scope.get(RESPONSE_HEADERS, ()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class BodyTooLarge(HTTPException):
    """Raised from `receive`. An `HTTPException`, so FastAPI's body parsing lets it through (it
    turns any other error into a 400) and the handlers render it as a 413 problem."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request bodies on this route may be at most {limit} bytes.")


class BodyLimitMiddleware:
    """Refuse a request body over its route's limit before it is read: a declared
    `Content-Length` over it at the first read, a streamed body as soon as its chunks pass it.

    `route_limits` gives some routes, by their endpoint function, a limit of their own; every
    other route has `max_bytes`. The limit is looked up at the first read, by which time the
    router has matched the route (nothing reads a body before that)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        route_limits: Mapping[Callable[..., object], int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.route_limits = dict(route_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        limit: int | None = None
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal limit, received
            if limit is None:
                endpoint = getattr(scope.get("route"), "endpoint", None)
                limit = (
                    self.route_limits.get(endpoint, self.max_bytes) if endpoint else self.max_bytes
                )
            if declared is not None and declared > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, receive_within_limit, send)


def _peer_in(scope: Scope, networks: Sequence[Network]) -> bool:
    """Whether the connection's peer address is in one of `networks`."""
    client = scope.get("client")
    if not client:
        return False
    try:
        peer = ipaddress.ip_address(client[0])
    except ValueError:  # a Unix socket's path, or no address at all
        return False
    return any(peer in network for network in networks)


def client_address(scope: Scope, trusted_proxies: Sequence[Network]) -> str:
    """The client's address: the connection's peer, or, when that peer is a trusted proxy, the
    nearest address of `X-Forwarded-For` that is not one (read from the right: what a proxy
    appends is trustworthy, what the client sent is not)."""
    client = scope.get("client")
    peer = str(client[0]) if client else ""
    if not trusted_proxies or not _peer_in(scope, trusted_proxies):
        return peer
    forwarded = [
        part.strip()
        for name, value in scope["headers"]
        if name.lower() == b"x-forwarded-for"
        for part in value.decode("latin-1").split(",")
    ]
    for candidate in reversed(forwarded):
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            return peer  # a malformed hop: trust nothing further left
        if not any(address in network for network in trusted_proxies):
            return str(address)
    return forwarded[0] if forwarded else peer


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else None
    return None
