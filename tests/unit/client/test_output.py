"""What the API commands print: JSON as the API answered, tables of plain text."""

from __future__ import annotations

import json

import pytest

from app.client.output import Output, field, show_object, show_page

PAGE = {
    "items": [
        {"id": "a1", "events": ["task.failed"], "description": "[bold]not markup[/bold]"},
        {"id": "b2", "events": ["*"], "description": None},
    ],
    "next_cursor": "c3",
}
COLUMNS = (field("id"), field("events"), field("description"))


class TestShowPage:
    def test_json_is_the_page_as_the_api_answered(self, capsys: pytest.CaptureFixture[str]) -> None:
        show_page(PAGE, Output.json, COLUMNS)

        assert json.loads(capsys.readouterr().out) == PAGE

    def test_a_table_shows_values_as_plain_text_and_the_cursor_on_stderr(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        show_page(PAGE, Output.table, COLUMNS)

        printed = capsys.readouterr()
        rows = [line.split() for line in printed.out.splitlines() if line.strip()]
        assert rows[0] == ["ID", "EVENTS", "DESCRIPTION"]
        assert ["a1", '["task.failed"]', "[bold]not", "markup[/bold]"] in rows
        assert ["b2", '["*"]'] in rows
        assert "--cursor c3" in printed.err


class TestShowObject:
    def test_a_table_has_a_row_per_field_with_objects_as_json(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        show_object({"id": "a1", "result": {"n": 1}, "error": None}, Output.table)

        rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip()]
        assert rows == [["id", "a1"], ["result", '{"n":1}'], ["error"]]
