"""The security header sets: chosen by path and scheme, appended once, never over a response's
own Cache-Control."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from app.core.headers import API_POLICY, DOCS_POLICY, SecurityHeaders, console_policy
from app.core.middleware import RequestIdMiddleware


def _scope(path: str, *, scheme: str = "http", root_path: str = "") -> Scope:
    return {"type": "http", "path": path, "scheme": scheme, "root_path": root_path, "headers": []}


def _policy(headers: tuple[tuple[bytes, bytes], ...]) -> str:
    return dict(headers)[b"content-security-policy"].decode()


class TestSecurityHeaders:
    def test_a_docs_page_under_a_root_path_gets_the_docs_policy(self) -> None:
        headers = SecurityHeaders(docs_paths=["/docs"])

        chosen = headers.of(_scope("/api/docs", root_path="/api"))

        assert _policy(chosen) == DOCS_POLICY

    def test_an_api_path_gets_the_api_policy(self) -> None:
        headers = SecurityHeaders(docs_paths=["/docs", None])

        chosen = headers.of(_scope("/v1/docs"))

        assert _policy(chosen) == API_POLICY

    def test_no_max_age_sends_no_hsts_even_over_https(self) -> None:
        headers = SecurityHeaders(hsts_max_age_s=0)

        chosen = headers.of(_scope("/v1/tasks", scheme="https"))

        assert b"strict-transport-security" not in dict(chosen)


async def _answer(response_headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": response_headers})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    await RequestIdMiddleware(app)(_scope("/v1/x"), receive, send)
    headers: list[tuple[bytes, bytes]] = sent[0]["headers"]
    return headers


class TestCacheControl:
    async def test_an_answer_without_one_is_not_stored(self) -> None:
        headers = await _answer([(b"content-type", b"application/json")])

        assert [v for n, v in headers if n == b"cache-control"] == [b"no-store"]

    async def test_a_response_s_own_cache_control_is_kept_alone(self) -> None:
        headers = await _answer([(b"cache-control", b"max-age=60")])

        assert [v for n, v in headers if n == b"cache-control"] == [b"max-age=60"]


class TestConsolePolicy:
    def test_the_console_and_its_files_get_the_console_policy(self) -> None:
        headers = SecurityHeaders(console_prefix="/console", storage_origins=["http://s3.test"])

        chosen = [_policy(headers.of(_scope(path))) for path in ("/console", "/console/app.js")]

        assert chosen == [console_policy(["http://s3.test"])] * 2

    def test_a_path_that_only_starts_like_it_gets_the_api_policy(self) -> None:
        headers = SecurityHeaders(console_prefix="/console")

        chosen = headers.of(_scope("/consoles"))

        assert _policy(chosen) == API_POLICY

    def test_under_a_root_path_the_console_is_found_too(self) -> None:
        headers = SecurityHeaders(console_prefix="/console")

        chosen = headers.of(_scope("/api/console/", root_path="/api"))

        assert _policy(chosen) == console_policy()

    def test_the_storage_origin_is_reachable_but_no_inline_script(self) -> None:
        policy = console_policy(["https://s3.example.com"])

        assert "script-src 'self';" in policy
        assert "connect-src 'self' https://s3.example.com" in policy
        assert "unsafe-inline" not in policy
