"""A worker's memory while it works on large files: peak RSS over its own baseline, per task.

Starts the embedded engines, a fresh migrated database, and `taskgate api`, `taskgate worker --pool=prefork
--concurrency=1` and `taskgate scheduler` as processes, then for each file: uploads it with a
presigned PUT (streamed from this process, never held whole), confirms it (the worker's
`files.digest` job hashes it), and runs `file.checksum` on it. The pool process's VmRSS is sampled
every 2 ms from /proc; its baseline is taken right before each job, after a warm-up task.
A flat worker grows by about its read buffer (1 MiB) whatever the file size.

    .venv/bin/python -m benchmarks.file_memory [--short] [--sizes-mib 20,100,400] [--json PATH]

`--short` (CI): one 20 MiB file and the `image.thumbnail` cases (`benchmarks.file_images`). The
default adds 100 and 400 MiB files, a 1,000,000-row `csv.profile` and an `archive.zip` of the
100 MiB file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import hashlib
import io
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from app.devstack import DevStack, StackUrls
from benchmarks.dev_startup import load_average, machine
from benchmarks.file_images import image_round
from benchmarks.rss import RssSampler, children

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
CHUNK = MIB
TASK_TIMEOUT_S = 600.0
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Measurement:
    job: str
    size_mib: float
    seconds: float
    baseline_mib: float
    peak_mib: float
    growth_mib: float
    samples: int


class _Processes:
    """Children in their own sessions; everything they started goes with them."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            child = subprocess.Popen(  # noqa: S603 (fixed argv)
                [sys.executable, "-m", "app.cli", *args],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children.append(child)
        return child

    def run(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(  # noqa: S603 (fixed argv)
            [sys.executable, "-m", "app.cli", *args],
            cwd=REPO_ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout.strip()

    def stop_all(self) -> None:
        for child in reversed(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout_s:.0f} s")
        time.sleep(0.1)


def _create_database(urls: StackUrls) -> str:
    name = f"bench_files_{secrets.token_hex(4)}"

    async def create() -> None:
        url = make_url(urls.database_url).set(drivername="postgresql", database="postgres")
        admin = await asyncpg.connect(url.render_as_string(hide_password=False))
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    asyncio.run(create())
    return make_url(urls.database_url).set(database=name).render_as_string(hide_password=False)


def _random_chunks(size: int, digest: Any) -> Iterator[bytes]:
    left = size
    while left:
        chunk = os.urandom(min(CHUNK, left))
        digest.update(chunk)
        left -= len(chunk)
        yield chunk


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            yield chunk


def _csv_chunks(rows: int, digest: Any) -> Iterator[bytes]:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["id", "amount", "category", "paid", "day"])
    for i in range(1, rows + 1):
        amount = "" if i % 7 == 0 else f"{(i * 7919) % 100_000 / 100:.2f}"
        writer.writerow([i, amount, f"c{i % 50}", i % 2 == 0, f"2024-01-{i % 28 + 1:02d}"])
        if text.tell() >= CHUNK or i == rows:
            chunk = text.getvalue().encode()
            digest.update(chunk)
            yield chunk
            text.seek(0)
            text.truncate()


class Bench:
    def __init__(self, api: httpx.Client, project_id: str, pool_pid: int) -> None:
        self.api = api
        self.s3 = httpx.Client(timeout=TASK_TIMEOUT_S)
        self.project_id = project_id
        self.pool_pid = pool_pid

    def upload(self, name: str, size: int, chunks: Iterator[bytes]) -> str:
        created = self.api.post(
            f"/v1/projects/{self.project_id}/files",
            json={"filename": name, "content_type": "application/octet-stream", "size": size},
        )
        created.raise_for_status()
        body = created.json()
        put = self.s3.put(body["upload_url"], content=chunks, headers=body["headers"])
        put.raise_for_status()
        file_id: str = body["id"]
        return file_id

    def sha256_recorded(self, file_id: str) -> str | None:
        file = self.api.get(f"/v1/files/{file_id}").json()
        sha256: str | None = file["sha256"]
        return sha256

    def run_task(self, type: str, input: dict[str, Any]) -> dict[str, Any]:
        response = self.api.post(
            f"/v1/projects/{self.project_id}/tasks", json={"type": type, "input": input}
        )
        response.raise_for_status()
        task_id = response.json()["id"]
        deadline = time.monotonic() + TASK_TIMEOUT_S
        while time.monotonic() < deadline:
            task: dict[str, Any] = self.api.get(f"/v1/tasks/{task_id}?wait=30").json()
            if task["status"] == "succeeded":
                return task
            if task["status"] in ("failed", "canceled"):
                raise RuntimeError(f"{type} {task['status']}: {task['error']}")
        raise TimeoutError(f"{type} did not finish in {TASK_TIMEOUT_S:.0f} s")

    def measure(self, job: str, size: int, work: Callable[[], object]) -> Measurement:
        with RssSampler([self.pool_pid], interval_s=0.002) as rss:
            started = time.monotonic()
            work()
            seconds = time.monotonic() - started
        measured = Measurement(
            job=job,
            size_mib=round(size / MIB, 1),
            seconds=round(seconds, 2),
            baseline_mib=round(rss.baseline / MIB, 1),
            peak_mib=round(rss.peak / MIB, 1),
            growth_mib=round(rss.growth / MIB, 1),
            samples=rss.samples,
        )
        print(  # noqa: T201 (progress of the run)
            f"  {job:<40} {measured.size_mib:>7.1f} MiB  {seconds:6.2f} s"
            f"  RSS {measured.baseline_mib:.1f} -> {measured.peak_mib:.1f} MiB"
            f" (+{measured.growth_mib:.1f})",
            flush=True,
        )
        return measured

    def warm_up(self) -> None:
        """Imports, database pool and S3 client of the pool process, before any baseline."""
        data = b"".join(_csv_chunks(1000, hashlib.sha256()))
        file_id = self.upload("warm.csv", len(data), iter([data]))
        self.api.post(f"/v1/files/{file_id}/complete").raise_for_status()
        _wait(lambda: self.sha256_recorded(file_id) is not None, "digest")
        self.run_task("file.checksum", {"file_id": file_id})
        self.run_task("csv.profile", {"file_id": file_id})
        self.run_task("archive.zip", {"file_ids": [file_id]})

    def file_round(self, size: int) -> tuple[str, list[Measurement]]:
        """Upload `size` random bytes; measure the digest job and a checksum of them."""
        digest = hashlib.sha256()
        file_id = self.upload(f"random-{size}.bin", size, _random_chunks(size, digest))
        expected = digest.hexdigest()

        def confirm_and_digest() -> None:
            self.api.post(f"/v1/files/{file_id}/complete").raise_for_status()
            _wait(lambda: self.sha256_recorded(file_id) is not None, "digest", TASK_TIMEOUT_S)

        def checksum() -> None:
            result = self.run_task("file.checksum", {"file_id": file_id})["result"]
            if result["sha256"] != expected:
                raise AssertionError("file.checksum disagrees with the local sha256")

        return file_id, [
            self.measure("files.digest (presigned upload)", size, confirm_and_digest),
            self.measure("file.checksum", size, checksum),
        ]


def run(sizes_mib: Sequence[int], *, full: bool, scratch: Path) -> list[Measurement]:
    results: list[Measurement] = []
    with DevStack(scratch / "engines", durable=False) as stack:
        urls = stack.start()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")},
            **urls.as_env(),
            "TASKGATE_ENV": "test",
            "TASKGATE_LOG_LEVEL": "WARNING",
            "TASKGATE_DATABASE__URL": _create_database(urls),
        }
        processes = _Processes(env, scratch)
        try:
            processes.run("migrate")
            password = secrets.token_urlsafe(16)
            email = f"bench-{secrets.token_hex(4)}@example.com"
            processes.run("users", "create", email, "--password-stdin", stdin=password + "\n")
            project_id = processes.run("projects", "create", "bench", "--owner", email)
            key = processes.run("keys", "create", "--project", project_id, "--name", "bench")
            port = 20000 + secrets.randbelow(10000)
            processes.start("api", "api", "--port", str(port))
            worker = processes.start("worker", "worker", "--pool=prefork", "--concurrency=1")
            processes.start("scheduler", "scheduler")
            base_url = f"http://127.0.0.1:{port}"
            _wait(lambda: _answers(f"{base_url}/health/ready"), "API")
            _wait(lambda: len(children(worker.pid)) == 1, "worker pool process")
            [pool] = children(worker.pid)
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=base_url, headers=headers, timeout=60) as api:
                bench = Bench(api, project_id, pool)
                bench.warm_up()
                kept: dict[int, str] = {}
                for size_mib in sizes_mib:
                    file_id, measured = bench.file_round(size_mib * MIB)
                    kept[size_mib] = file_id
                    results += measured
                results += image_round(bench)
                if full:
                    rows = 1_000_000
                    path = scratch / "rows.csv"
                    with path.open("wb") as out:
                        for chunk in _csv_chunks(rows, hashlib.sha256()):
                            out.write(chunk)
                    size = path.stat().st_size
                    table = bench.upload("rows.csv", size, _file_chunks(path))
                    api.post(f"/v1/files/{table}/complete").raise_for_status()
                    _wait(lambda: bench.sha256_recorded(table) is not None, "digest")
                    results.append(
                        bench.measure(
                            f"csv.profile ({rows:,} rows)",
                            size,
                            lambda: bench.run_task("csv.profile", {"file_id": table}),
                        )
                    )
                    zipped = kept.get(100) or kept[max(kept)]
                    results.append(
                        bench.measure(
                            "archive.zip (store, one file)",
                            api.get(f"/v1/files/{zipped}").json()["size"],
                            lambda: bench.run_task(
                                "archive.zip", {"file_ids": [zipped], "compression": "store"}
                            ),
                        )
                    )
                bench.s3.close()
        finally:
            processes.stop_all()
    return results


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def table(results: Sequence[Measurement]) -> str:
    lines = [
        "| job | file | time | RSS before | RSS peak | growth |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {m.job} | {m.size_mib:.1f} MiB | {m.seconds:.2f} s | {m.baseline_mib:.1f} MiB"
        f" | {m.peak_mib:.1f} MiB | +{m.growth_mib:.1f} MiB |"
        for m in results
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="one 20 MiB file (for CI)")
    parser.add_argument("--sizes-mib", default=None, help="comma-separated file sizes in MiB")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    sizes = [
        int(size) for size in (args.sizes_mib or ("20" if args.short else "20,100,400")).split(",")
    ]
    host = machine()
    load_before = load_average()
    print(  # noqa: T201
        f"{host['cpus']} CPUs, {host['memory_gib']} GiB, Python {host['python']}; load {load_before}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-files-") as scratch:
        results = run(sizes, full=not args.short, scratch=Path(scratch))
    load_after = load_average()
    print("\n" + table(results) + f"\n\nload average {load_before} -> {load_after}")  # noqa: T201
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": host,
                    "load": [load_before, load_after],
                    "results": [asdict(m) for m in results],
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
