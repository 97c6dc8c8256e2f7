from __future__ import annotations

import uuid

import pytest

from app.files.storage import object_key


class TestObjectKey:
    def test_keys_live_under_the_project(self) -> None:
        project_id = uuid.UUID("00000000-0000-0000-0000-000000000001")

        assert object_key(project_id, "results", "t.json") == (
            "projects/00000000-0000-0000-0000-000000000001/results/t.json"
        )

    @pytest.mark.parametrize("parts", [(), ("",), ("..",), ("a/b",), ("results", ".")])
    def test_parts_that_could_escape_the_project_are_refused(self, parts: tuple[str, ...]) -> None:
        with pytest.raises(ValueError, match="invalid object key"):
            object_key(uuid.uuid4(), *parts)
