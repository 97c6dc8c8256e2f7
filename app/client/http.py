"""Requests to the API, and to the presigned storage URLs it hands out, with their failures
turned into `ApiError` (an answer that is not a success) and `Unreachable` (no answer)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from app import __version__
from app.client.config import Connection
from app.client.errors import ApiError, Unreachable

USER_AGENT = f"taskgate-cli/{__version__}"
TIMEOUT_S = 30.0


def _failure(response: httpx.Response) -> ApiError:
    problem: dict[str, Any] | None = None
    if response.headers.get("content-type", "").split(";")[0].strip().endswith("json"):
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and ("title" in body or "detail" in body):
            problem = body
    return ApiError(
        response.status_code, problem, response.text, response.headers.get("x-request-id")
    )


class ApiClient:
    """One connection's requests. Presigned URLs go through a client without our credentials."""

    def __init__(self, connection: Connection, *, timeout: float = TIMEOUT_S) -> None:
        self.connection = connection
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if connection.api_key:
            headers["Authorization"] = f"Bearer {connection.api_key}"
        self._api = httpx.Client(base_url=connection.url, headers=headers, timeout=timeout)
        self._storage = httpx.Client(headers={"User-Agent": USER_AGENT}, timeout=timeout)

    def close(self) -> None:
        self._api.close()
        self._storage.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The JSON body of a successful answer (None for 204)."""
        params = {key: value for key, value in (params or {}).items() if value is not None}
        try:
            response = self._api.request(
                method,
                path,
                params=params,
                json=json,
                headers=headers,
                timeout=timeout if timeout is not None else self._api.timeout,
            )
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.connection.url}: {_reason(exc)}") from exc
        if not response.is_success:
            raise _failure(response)
        return None if response.status_code == 204 or not response.content else response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, json=json)

    def page(
        self, path: str, *, limit: int, cursor: str | None, follow: bool, **filters: Any
    ) -> dict[str, Any]:
        """One page of a list (`{items, next_cursor}`), or with `follow` every page from `cursor`
        on, as one page whose `next_cursor` is null."""
        items: list[Any] = []
        while True:
            page = self.get(path, limit=limit, cursor=cursor, **filters)
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not follow or not cursor:
                return {"items": items, "next_cursor": cursor}

    def put_object(
        self, url: str, *, headers: dict[str, str], chunks: Iterable[bytes], timeout: float
    ) -> None:
        """PUT bytes to a presigned URL (its signed headers, Content-Length among them)."""
        try:
            response = self._storage.put(url, content=chunks, headers=headers, timeout=timeout)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach storage: {_reason(exc)}") from exc
        if not response.is_success:
            raise ApiError(response.status_code, None, f"storage: {response.text}", None)

    @contextmanager
    def get_object(self, url: str, *, timeout: float) -> Iterator[httpx.Response]:
        """A streamed GET of a presigned URL; read it inside the block."""
        try:
            with self._storage.stream("GET", url, timeout=timeout) as response:
                if not response.is_success:
                    response.read()
                    raise ApiError(response.status_code, None, f"storage: {response.text}", None)
                yield response
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach storage: {_reason(exc)}") from exc


def _reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return str(exc) or type(exc).__name__
