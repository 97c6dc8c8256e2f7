"""A large JPEG is decoded at a reduced scale that still covers the thumbnail."""

from __future__ import annotations

import io

from PIL import Image

from app.tasktypes.files.thumbnail import reduce_on_decode


def _jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


class TestReduceOnDecode:
    def test_a_jpeg_decodes_at_the_smallest_scale_covering_the_box(self) -> None:
        with Image.open(io.BytesIO(_jpeg(4000, 3000))) as image:
            reduce_on_decode(image, (300, 200))
            image.load()

            assert image.size == (500, 375)  # 1/8: the next step down would not cover 300x200

    def test_a_box_close_to_the_size_decodes_at_full_scale(self) -> None:
        with Image.open(io.BytesIO(_jpeg(800, 600))) as image:
            reduce_on_decode(image, (700, 500))
            image.load()

            assert image.size == (800, 600)

    def test_other_formats_are_left_as_they_are(self) -> None:
        buffer = io.BytesIO()
        Image.new("RGB", (800, 600)).save(buffer, format="PNG")
        with Image.open(buffer) as image:
            reduce_on_decode(image, (100, 75))
            image.load()

            assert image.size == (800, 600)
