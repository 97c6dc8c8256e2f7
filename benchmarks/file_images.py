"""`image.thumbnail` cases for `benchmarks.file_memory`: what scaling a large image costs a worker.

A 24-megapixel JPEG (decoded at 1/8 scale for a 320 px thumbnail), the same pixels as a PNG
(decoded whole: about 3 bytes a pixel), and a PNG whose header declares 64 megapixels over a
20 MiB body (refused after its first MiB: neither copied nor decoded).
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    from benchmarks.file_memory import Bench, Measurement

MIB = 1024 * 1024
SIZE = (6000, 4000)
TASK_TIMEOUT_S = 600.0


def _noise(image_format: str, **options: object) -> bytes:
    """Noise compresses badly: a file about as large as such a photo, or larger."""
    image = Image.effect_noise(SIZE, 40).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _declaring_png(width: int, height: int, padding: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
        + b"\0" * padding
    )


def _ready(bench: Bench, file_id: str) -> None:
    """Complete the upload and wait for its digest job, so it never runs while measuring."""
    bench.api.post(f"/v1/files/{file_id}/complete").raise_for_status()
    deadline = time.monotonic() + TASK_TIMEOUT_S
    while bench.sha256_recorded(file_id) is None:
        if time.monotonic() > deadline:
            raise TimeoutError("the digest job did not finish")
        time.sleep(0.05)


def _failed(bench: Bench, type: str, input: dict[str, Any]) -> dict[str, Any]:
    """Run a task that must fail; its error."""
    response = bench.api.post(
        f"/v1/projects/{bench.project_id}/tasks", json={"type": type, "input": input}
    )
    response.raise_for_status()
    task_id = response.json()["id"]
    deadline = time.monotonic() + TASK_TIMEOUT_S
    while time.monotonic() < deadline:
        task: dict[str, Any] = bench.api.get(f"/v1/tasks/{task_id}?wait=30").json()
        if task["status"] == "failed":
            error: dict[str, Any] = task["error"]
            return error
        if task["status"] in ("succeeded", "canceled"):
            raise AssertionError(f"{type} {task['status']}, expected to fail")
    raise TimeoutError(f"{type} did not finish in {TASK_TIMEOUT_S:.0f} s")


def _thumbnail(bench: Bench, file_id: str) -> Callable[[], object]:
    return lambda: bench.run_task("image.thumbnail", {"file_id": file_id, "width": 320})


def image_round(bench: Bench) -> list[Measurement]:
    """Upload each image, let its digest run, then measure the thumbnail task alone."""
    small = io.BytesIO()
    Image.new("RGB", (64, 48)).save(small, format="PNG")
    warm_id = bench.upload("warm.png", len(small.getvalue()), iter([small.getvalue()]))
    _ready(bench, warm_id)
    _thumbnail(bench, warm_id)()  # Pillow's imports, before any baseline
    results: list[Measurement] = []
    for name, data in (
        ("jpeg", _noise("JPEG", quality=90)),
        ("png", _noise("PNG", compress_level=1)),
    ):
        file_id = bench.upload(f"noise.{name}", len(data), iter([data]))
        _ready(bench, file_id)
        results.append(
            bench.measure(
                f"image.thumbnail ({name}, 24 Mpx)", len(data), _thumbnail(bench, file_id)
            )
        )
    declaring = _declaring_png(8000, 8000, 20 * MIB)
    refused_id = bench.upload("declares-64mpx.png", len(declaring), iter([declaring]))
    _ready(bench, refused_id)

    def refused() -> None:
        error = _failed(bench, "image.thumbnail", {"file_id": refused_id, "width": 320})
        if "MAX_SOURCE_PIXELS" not in error["message"]:
            raise AssertionError(f"refused for another reason: {error}")

    results.append(
        bench.measure("image.thumbnail (declares 64 Mpx, refused)", len(declaring), refused)
    )
    return results
