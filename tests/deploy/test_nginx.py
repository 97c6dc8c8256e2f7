"""deploy/nginx/nginx.conf with Debian's nginx, over TLS, in front of two real API processes.

The file is used as it is, but for the upstream servers (two API processes on 127.0.0.1 instead
of the compose services), the listen ports (free ones on 127.0.0.1) and the certificate paths (a
certificate made by deploy/make-cert.sh): `_render` fails if any of these is no longer there.
Run by another user than root (CI), it also puts nginx's temporary files in the test's
directory, as that user cannot write nginx's own.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.debian import debian_tool
from tests.support import REPO_ROOT, ProcessGroup, free_port, http_ok, wait_until

pytestmark = pytest.mark.e2e

NGINX_CONF = REPO_ROOT / "deploy" / "nginx" / "nginx.conf"
MAKE_CERT = REPO_ROOT / "deploy" / "make-cert.sh"
UPSTREAM_SERVER = re.compile(r"^(\s*)server api-\d:8000( [^;]*);$", re.MULTILINE)
HEX_ID = re.compile(r"[0-9a-f]{32}")


def _render(
    conf: str, *, upstreams: list[int], http_port: int, https_port: int, tls_dir: Path
) -> str:
    """The project's nginx.conf with only addresses, ports and certificate paths replaced."""
    servers = UPSTREAM_SERVER.findall(conf)
    assert len(servers) == 3, "the upstream lists the three API replicas"
    indent, options = servers[0]
    conf = UPSTREAM_SERVER.sub("", conf, count=3)
    lines = "".join(f"{indent}server 127.0.0.1:{port}{options};\n" for port in upstreams)
    conf = conf.replace("least_conn;\n", "least_conn;\n" + lines, 1)
    replacements = {
        "        listen 80;\n": f"        listen 127.0.0.1:{http_port};\n",
        "        listen [::]:80;\n": "",
        "        listen 443 ssl http2;\n": f"        listen 127.0.0.1:{https_port} ssl http2;\n",
        "        listen [::]:443 ssl http2;\n": "",
        "/etc/nginx/tls/tls.crt;": f"{tls_dir / 'tls.crt'};",
        "/etc/nginx/tls/tls.key;": f"{tls_dir / 'tls.key'};",
    }
    for old, new in replacements.items():
        assert conf.count(old) == 1, f"nginx.conf no longer has {old!r}"
        conf = conf.replace(old, new)
    if os.geteuid() == 0:  # its workers run as nobody, who cannot enter the test's directory
        return conf
    temporary = "".join(
        f"    {kind}_temp_path {tls_dir.parent / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return conf.replace("http {\n", "http {\n" + temporary, 1)


@dataclass
class Proxied:
    """nginx on `https_url` (and `http_url`) in front of the API processes in `apis`."""

    http_url: str
    https_url: str
    tls: ssl.SSLContext
    apis: list[subprocess.Popen[bytes]]
    api_urls: list[str]
    api_logs: list[Path]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.https_url, verify=self.tls, timeout=10)


def _access_request_ids(log: Path) -> list[str]:
    """The request ids of the API's access lines in `log` (one JSON object per line)."""
    *lines, _partial = log.read_text().split("\n")
    entries: list[dict[str, Any]] = [orjson.loads(line) for line in lines if line.startswith("{")]
    return [entry["request_id"] for entry in entries if entry["logger"] == "taskgate.access"]


@contextlib.contextmanager
def _proxy(group: ProcessGroup, process_env: dict[str, str], tmp_path: Path) -> Iterator[Proxied]:
    """Two API processes and nginx in front of them, all stopped when the block ends."""
    nginx = debian_tool("nginx", "nginx")
    tls_dir = tmp_path / "tls"
    made = subprocess.run(  # noqa: S603 - the project's script
        [str(MAKE_CERT), str(tls_dir), "localhost"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stdout + made.stderr

    # As in compose: the API keeps X-Request-ID only from the proxy's addresses.
    env = {**process_env, "TASKGATE_API__TRUSTED_PROXIES": '["127.0.0.1/32"]'}
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"api-{index}.log" for index in range(len(ports))]
    try:
        apis = [
            group.start_python("-m", "app.cli", "api", "--port", str(port), env=env, log_path=log)
            for port, log in zip(ports, logs, strict=True)
        ]
        api_urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url in api_urls:
            wait_until(functools.partial(http_ok, f"{url}/health/live"), timeout_s=60, what=url)

        http_port, https_port = free_port(), free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(
            _render(
                NGINX_CONF.read_text(),
                upstreams=ports,
                http_port=http_port,
                https_port=https_port,
                tls_dir=tls_dir,
            )
        )
        argv = [nginx, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")]
        checked = subprocess.run(  # noqa: S603 - the installed nginx
            [*argv, "-t"], capture_output=True, text=True, timeout=30, check=False
        )
        assert checked.returncode == 0, checked.stderr
        group.start(
            [*argv, "-g", f"daemon off; pid {tmp_path / 'nginx.pid'};"],
            env=process_env,
            log_path=tmp_path / "nginx.log",
        )
        tls = ssl.create_default_context(cafile=tls_dir / "tls.crt")
        https_url = f"https://127.0.0.1:{https_port}"

        def nginx_answers() -> bool:
            try:
                response = httpx.get(f"{https_url}/health/live", verify=tls, timeout=1)
            except httpx.HTTPError:
                return False
            return response.status_code == 200

        wait_until(nginx_answers, timeout_s=30, what="nginx")
        yield Proxied(
            http_url=f"http://127.0.0.1:{http_port}",
            https_url=https_url,
            tls=tls,
            apis=apis,
            api_urls=api_urls,
            api_logs=logs,
        )
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def proxied(
    process_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxied]:
    """Shared by the tests that leave both APIs running."""
    with _proxy(ProcessGroup(), process_env, tmp_path_factory.mktemp("nginx")) as running:
        yield running


@pytest.fixture
def proxied_alone(
    processes: ProcessGroup, process_env: dict[str, str], tmp_path: Path
) -> Iterator[Proxied]:
    """Of the test's own: it kills one of the APIs."""
    with _proxy(processes, process_env, tmp_path) as running:
        yield running


def _get_ids(client: httpx.Client, count: int) -> list[str]:
    """`count` requests through nginx, each with an id of its own; every one must succeed."""
    sent = []
    for _ in range(count):
        request_id = f"spread-{uuid.uuid4().hex}"
        response = client.get("/health/live", headers={"X-Request-ID": request_id})
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == request_id
        sent.append(request_id)
    return sent


def _wait_logged(proxied: Proxied, request_ids: list[str]) -> list[set[str]]:
    """Which API logged which of `request_ids`, once all of them are in the logs."""

    def per_api() -> list[set[str]]:
        return [set(_access_request_ids(log)) & set(request_ids) for log in proxied.api_logs]

    wait_until(
        lambda: len(set().union(*per_api())) == len(request_ids),
        timeout_s=10,
        what="the access lines of every request",
    )
    return per_api()


class TestNginxInFrontOfTwoApis:
    def test_spreads_requests_over_both_and_survives_one_being_killed(
        self, proxied_alone: Proxied
    ) -> None:
        proxied = proxied_alone
        with proxied.client() as client:
            before = _get_ids(client, 20)
            served_before = _wait_logged(proxied, before)

            os.killpg(proxied.apis[0].pid, signal.SIGKILL)
            proxied.apis[0].wait(timeout=10)
            after = _get_ids(client, 20)
            served_after = _wait_logged(proxied, after)

        assert all(len(served) >= 5 for served in served_before), [len(s) for s in served_before]
        assert served_after[0] == set()
        assert served_after[1] == set(after)

    def test_request_id_is_made_when_absent_and_kept_when_sent(self, proxied: Proxied) -> None:
        with proxied.client() as client:
            made = client.get("/v1/nowhere")
            kept = client.get("/v1/nowhere", headers={"X-Request-ID": "client-chosen-1"})

        made_id = made.headers["x-request-id"]
        assert made.status_code == 404
        assert HEX_ID.fullmatch(made_id), made_id  # nginx's $request_id
        assert made.json()["request_id"] == made_id
        assert kept.headers["x-request-id"] == "client-chosen-1"
        assert kept.json()["request_id"] == "client-chosen-1"
        logged = _wait_logged(proxied, [made_id, "client-chosen-1"])
        assert set().union(*logged) == {made_id, "client-chosen-1"}

    @pytest.mark.parametrize("path", ["/metrics", "/metrics?format=x", "/%6Detrics", "/metrics/"])
    def test_metrics_are_refused_outside_and_served_inside(
        self, proxied: Proxied, path: str
    ) -> None:
        with proxied.client() as client:
            outside = client.get(path)
        inside = httpx.get(f"{proxied.api_urls[0]}/metrics", timeout=10)

        assert outside.status_code == 403
        assert "taskgate" not in outside.text
        assert inside.status_code == 200
        assert "taskgate_http_requests_total" in inside.text

    def test_plain_http_is_redirected_to_https(self, proxied: Proxied) -> None:
        response = httpx.get(f"{proxied.http_url}/v1/projects?limit=5", timeout=10)

        assert response.status_code == 301
        assert response.headers["location"] == "https://127.0.0.1/v1/projects?limit=5"

    def test_refuses_a_body_over_the_limit_before_the_api_sees_it(self, proxied: Proxied) -> None:
        with proxied.client() as client:
            response = client.post(
                "/v1/auth/register",
                content=b"x" * (12 * 1024 * 1024),
                headers={"Content-Type": "application/json", "X-Request-ID": "too-large-1"},
            )

        assert response.status_code == 413
        assert all("too-large-1" not in _access_request_ids(log) for log in proxied.api_logs)
