"""Files end to end: real API, worker and scheduler processes, the embedded S3 server, over HTTP.

Uploads go by presigned PUT straight to S3 or streamed through `files:upload`; the four file task
types run on a real worker; outputs and large results come back through presigned links.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import os
import random
import statistics
import time
import zipfile
from collections import Counter
from typing import Any

import httpx
import pytest
from PIL import Image

from benchmarks.rss import RssSampler, children
from tests.platform import Platform

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024


async def _presigned_upload(
    api: httpx.AsyncClient, s3: httpx.AsyncClient, platform: Platform, data: bytes, name: str
) -> dict[str, Any]:
    created = await api.post(
        f"/v1/projects/{platform.project_id}/files",
        json={"filename": name, "content_type": "application/octet-stream", "size": len(data)},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    put = await s3.put(body["upload_url"], content=data, headers=body["headers"])
    assert put.status_code == 200, put.text
    completed = await api.post(f"/v1/files/{body['id']}/complete")
    assert completed.status_code == 200, completed.text
    file: dict[str, Any] = completed.json()
    return file


async def _direct_upload(
    api: httpx.AsyncClient, platform: Platform, data: bytes, name: str, content_type: str
) -> dict[str, Any]:
    response = await api.post(
        f"/v1/projects/{platform.project_id}/files:upload",
        files={"file": (name, data, content_type)},
    )
    assert response.status_code == 201, response.text
    file: dict[str, Any] = response.json()
    return file


async def _submit(api: httpx.AsyncClient, platform: Platform, type: str, input: object) -> str:
    response = await api.post(
        f"/v1/projects/{platform.project_id}/tasks", json={"type": type, "input": input}
    )
    assert response.status_code == 202, response.text
    task_id: str = response.json()["id"]
    return task_id


async def _finished(api: httpx.AsyncClient, task_id: str, timeout_s: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        task: dict[str, Any] = (await api.get(f"/v1/tasks/{task_id}?wait=20")).json()
        if task["status"] in ("succeeded", "failed", "canceled"):
            assert task["status"] == "succeeded", task["error"]
            return task
    raise AssertionError(f"task {task_id} did not finish in {timeout_s}s")


async def _download(api: httpx.AsyncClient, s3: httpx.AsyncClient, file_id: str) -> bytes:
    file = (await api.get(f"/v1/files/{file_id}")).json()
    response = await s3.get(file["download_url"])
    assert response.status_code == 200
    return response.content


class TestChecksumOfALargeUpload:
    async def test_a_20_mb_presigned_upload_is_checksummed_in_flat_memory(
        self, platform: Platform
    ) -> None:
        worker = platform.start_worker(concurrency=1)
        # The process that runs the job: the worker itself (threads pool) or its prefork child.
        [runner] = children(worker.pid) or [worker.pid]
        data = os.urandom(20 * MIB)
        expected = hashlib.sha256(data).hexdigest()
        async with (
            httpx.AsyncClient(
                base_url=platform.base_url, headers=platform.headers, timeout=60
            ) as api,
            httpx.AsyncClient(timeout=60) as s3,
        ):
            file = await _presigned_upload(api, s3, platform, data, "big.bin")
            # The worker's files.digest job records the sha256 of the presigned upload.
            deadline = time.monotonic() + 60
            while (await api.get(f"/v1/files/{file['id']}")).json()["sha256"] is None:
                assert time.monotonic() < deadline, "the digest was never recorded"
                await asyncio.sleep(0.2)
            assert (await api.get(f"/v1/files/{file['id']}")).json()["sha256"] == expected
            # Warm up the job's process (imports, S3 client) so the baseline is its steady state.
            small = await _direct_upload(api, platform, b"warm", "warm.txt", "text/plain")
            await _finished(
                api, await _submit(api, platform, "file.checksum", {"file_id": small["id"]})
            )

            with RssSampler([runner], interval_s=0.002) as rss:
                task = await _finished(
                    api, await _submit(api, platform, "file.checksum", {"file_id": file["id"]})
                )

        assert task["result"]["sha256"] == expected
        assert task["result"]["size"] == len(data)
        assert rss.samples > 5
        print(  # noqa: T201 (reported figure)
            f"\nworker job process RSS while checksumming 20 MiB: baseline "
            f"{rss.baseline / MIB:.1f} MiB, peak {rss.peak / MIB:.1f} MiB "
            f"(+{rss.growth / MIB:.1f} MiB, {rss.samples} samples)"
        )
        assert rss.growth < 8 * MIB  # streamed in 1 MiB reads, never the whole 20 MiB


def _csv_rows(count: int) -> tuple[bytes, dict[str, Any]]:
    """A CSV of `count` rows and its profile computed independently, the plain way."""
    categories = ["red", "green", "blue", "amber", "violet"]
    rng = random.Random(7)  # noqa: S311 (reproducible test data)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["id", "amount", "category", "paid", "day"])
    amounts: list[float] = []
    counted: Counter[str] = Counter()
    for i in range(1, count + 1):
        amount = "" if i % 7 == 0 else f"{rng.uniform(-50, 950):.2f}"
        if amount:
            amounts.append(float(amount))
        category = categories[(i * i) % 5]
        counted[category] += 1
        writer.writerow(
            [i, amount, category, "true" if i % 3 else "false", f"2024-01-{i % 28 + 1:02d}"]
        )
    expected = {
        "rows": count,
        "amount": (min(amounts), max(amounts), statistics.fmean(amounts), count - len(amounts)),
        "top": counted.most_common(3),
    }
    return text.getvalue().encode(), expected


class TestFileTaskTypes:
    async def test_thumbnail_profile_zip_and_a_large_result_over_http(
        self, platform: Platform
    ) -> None:
        platform.start_worker(concurrency=2)
        image = io.BytesIO()
        Image.new("RGB", (800, 600), (10, 120, 200)).save(image, format="PNG")
        table, expected = _csv_rows(100_000)
        notes = [os.urandom(300_000), b"second file\n"]
        big = {"rows": [{"n": i, "pad": "x" * 90} for i in range(1000)]}
        async with (
            httpx.AsyncClient(
                base_url=platform.base_url, headers=platform.headers, timeout=60
            ) as api,
            httpx.AsyncClient(timeout=60) as s3,
        ):
            png = await _direct_upload(api, platform, image.getvalue(), "sky.png", "image/png")
            rows = await _presigned_upload(api, s3, platform, table, "rows.csv")
            first = await _direct_upload(
                api, platform, notes[0], "a.bin", "application/octet-stream"
            )
            second = await _direct_upload(api, platform, notes[1], "b.txt", "text/plain")
            submitted = [
                await _submit(
                    api, platform, "image.thumbnail", {"file_id": png["id"], "width": 160}
                ),
                await _submit(api, platform, "csv.profile", {"file_id": rows["id"]}),
                await _submit(
                    api,
                    platform,
                    "archive.zip",
                    {"file_ids": [png["id"], first["id"], second["id"]], "filename": "all.zip"},
                ),
                await _submit(api, platform, "echo", big),
            ]
            thumbnail, profile, archive, echoed = [await _finished(api, t) for t in submitted]

            thumb_bytes = await _download(api, s3, thumbnail["result"]["file_id"])
            zip_bytes = await _download(api, s3, archive["result"]["file_id"])
            large = await s3.get(echoed["result_url"])

        with Image.open(io.BytesIO(thumb_bytes)) as scaled:
            assert scaled.size == (160, 120)
        result = profile["result"]
        assert (result["rows"], result["columns"]) == (expected["rows"], 5)
        fields = {field["name"]: field for field in result["fields"]}
        assert [fields[name]["type"] for name in ("id", "amount", "category", "paid", "day")] == [
            "integer",
            "float",
            "string",
            "boolean",
            "datetime",
        ]
        assert (fields["id"]["min"], fields["id"]["max"], fields["id"]["mean"]) == (
            1,
            100_000,
            50_000.5,
        )
        low, high, mean, nulls = expected["amount"]
        assert (fields["amount"]["min"], fields["amount"]["max"]) == (low, high)
        assert fields["amount"]["mean"] == pytest.approx(mean, rel=1e-9)
        assert fields["amount"]["nulls"] == nulls
        top = [(item["value"], item["count"]) for item in fields["category"]["top_values"][:3]]
        assert top == expected["top"]
        with zipfile.ZipFile(io.BytesIO(zip_bytes)) as bundle:
            assert bundle.namelist() == ["sky.png", "a.bin", "b.txt"]
            assert [bundle.read(name) for name in bundle.namelist()] == [image.getvalue(), *notes]
        assert echoed["result"] is None
        assert large.json() == big
