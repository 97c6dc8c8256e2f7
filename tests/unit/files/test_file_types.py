"""The pure parts of the file task types: sizing, names, column statistics, input checks."""

from __future__ import annotations

import csv
import importlib
import io
import re
import uuid

import pytest
from pydantic import ValidationError

from app.tasktypes.files.archive import ZipInput, _entry_name
from app.tasktypes.files.csv_profile import TOP_VALUE_COUNTERS, CsvProfileInput, _Column
from app.tasktypes.files.streams import BoundedLines, RecordTooLong
from app.tasktypes.files.thumbnail import ThumbnailInput, fit


class TestFit:
    @pytest.mark.parametrize(
        ("size", "width", "height", "expected"),
        [
            ((640, 480), 128, None, (128, 96)),
            ((640, 480), None, 120, (160, 120)),
            ((640, 480), 100, 100, (100, 75)),
            ((480, 640), 100, 100, (75, 100)),
            ((100, 50), 400, None, (100, 50)),  # never enlarged
            ((10000, 1), 10, None, (10, 1)),  # never below one pixel
        ],
    )
    def test_the_image_fits_the_box_keeping_its_aspect(
        self,
        size: tuple[int, int],
        width: int | None,
        height: int | None,
        expected: tuple[int, int],
    ) -> None:
        assert fit(size, width, height) == expected


class TestThumbnailInput:
    def test_a_width_or_a_height_is_needed(self) -> None:
        with pytest.raises(ValidationError, match="width, height"):
            ThumbnailInput(file_id=uuid.uuid4())


class TestZipInput:
    def test_a_file_may_appear_once(self) -> None:
        file_id = str(uuid.uuid4())

        with pytest.raises(ValidationError, match="once"):
            ZipInput.model_validate({"file_ids": [file_id, file_id]})

    def test_entry_names_are_made_unique(self) -> None:
        taken: set[str] = set()

        names = [_entry_name(name, taken) for name in ["a.txt", "a.txt", "a.txt", "b", "b"]]

        assert names == ["a.txt", "a (2).txt", "a (3).txt", "b", "b (2)"]


class TestCsvProfileInput:
    @pytest.mark.parametrize("field", [{"delimiter": '"'}, {"delimiter": "a"}, {"encoding": "x"}])
    def test_unusable_options_are_refused(self, field: dict[str, str]) -> None:
        with pytest.raises(ValidationError):
            CsvProfileInput.model_validate({"file_id": str(uuid.uuid4()), **field})

    @pytest.mark.parametrize(
        "encoding",
        [
            *("rot13", "base64_codec", "zlib_codec", "hex", "bz2", "uu", "quopri"),
            *("punycode", "idna", "unicode_escape", "raw_unicode_escape", "undefined"),
        ],
    )
    def test_a_codec_that_is_no_character_set_is_refused(self, encoding: str) -> None:
        with pytest.raises(ValidationError, match="not a character set"):
            CsvProfileInput.model_validate({"file_id": str(uuid.uuid4()), "encoding": encoding})

    @pytest.mark.parametrize(
        "encoding", ["utf-8", "UTF-8-SIG", "utf-16", "latin-1", "cp1252", "shift_jis", "gb18030"]
    )
    def test_character_sets_are_accepted(self, encoding: str) -> None:
        data = CsvProfileInput.model_validate({"file_id": str(uuid.uuid4()), "encoding": encoding})

        assert data.encoding == encoding


def _records(text: str, max_chars: int) -> list[list[str]]:
    lines = BoundedLines(io.StringIO(text, newline=""), max_chars=max_chars)
    records = []
    for record in csv.reader(lines):
        lines.next_record()
        records.append(record)
    return records


class TestBoundedLines:
    def test_a_record_of_exactly_the_cap_is_read(self) -> None:
        assert _records("abcd\r\nxy\n", max_chars=6) == [["abcd"], ["xy"]]

    def test_one_character_more_is_refused(self) -> None:
        with pytest.raises(RecordTooLong):
            _records("ok\nabcdefg\n", max_chars=6)

    def test_the_lines_a_quoted_field_joins_count_as_one_record(self) -> None:
        assert _records('"a\nb",c\n', max_chars=8) == [["a\nb", "c"]]
        with pytest.raises(RecordTooLong):
            _records('"a\nb",c\n', max_chars=7)

    def test_each_record_has_the_whole_cap(self) -> None:
        assert _records("abcde\n" * 1000, max_chars=6) == [["abcde"]] * 1000


def _profile(*values: str) -> dict[str, object]:
    column = _Column("c")
    for value in values:
        column.add(value)
    return column.summary(3)


class TestColumn:
    def test_integers_have_exact_statistics(self) -> None:
        summary = _profile("3", " 1", "-2", "", "NULL", "10")

        assert summary["type"] == "integer"
        assert summary["count"] == 4
        assert summary["nulls"] == 2
        assert (summary["min"], summary["max"], summary["mean"]) == (-2, 10, 3.0)

    def test_one_decimal_makes_a_float_column(self) -> None:
        summary = _profile("1", "2.5", "1e1")

        assert summary["type"] == "float"
        assert (summary["min"], summary["max"]) == (1, 10.0)
        assert summary["mean"] == pytest.approx(13.5 / 3)

    @pytest.mark.parametrize(
        ("values", "expected"),
        [
            (("true", "False", "TRUE"), "boolean"),
            (("2024-01-01", "2024-02-29T10:00:00+00:00"), "datetime"),
            (("1", "x"), "string"),
            (("inf", "1"), "string"),
            (("", "n/a"), "empty"),
        ],
    )
    def test_the_type_is_the_narrowest_that_fits_every_value(
        self, values: tuple[str, ...], expected: str
    ) -> None:
        summary = _profile(*values)

        assert summary["type"] == expected
        if expected not in ("integer", "float"):
            assert summary["min"] is summary["max"] is summary["mean"] is None

    def test_top_values_are_exact_while_distinct_values_fit_the_counters(self) -> None:
        summary = _profile(*["a"] * 5, *["b"] * 3, "c", "d")

        assert summary["top_values"] == [
            {"value": "a", "count": 5},
            {"value": "b", "count": 3},
            {"value": "c", "count": 1},
        ]
        assert summary["top_values_exact"] is True
        assert summary["distinct"] == 4

    def test_a_heavy_hitter_is_still_found_among_many_distinct_values(self) -> None:
        values = [f"id-{i}" for i in range(TOP_VALUE_COUNTERS * 20)] + ["hot"] * 1000

        summary = _profile(*values)

        top = summary["top_values"]
        assert isinstance(top, list)
        assert top[0]["value"] == "hot"
        assert summary["top_values_exact"] is False
        assert summary["distinct"] is None

    def test_nul_characters_never_reach_the_result(self) -> None:
        summary = _profile("a\x00b")

        assert summary["top_values"] == [{"value": "a\ufffdb", "count": 1}]


# The module (the package exports its handler function under the same name).
csv_profile = importlib.import_module("app.tasktypes.files.csv_profile")


class _Spy:
    """A pattern that records the length of every string it is asked to match."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.lengths: list[int] = []

    def match(self, value: str) -> re.Match[str] | None:
        self.lengths.append(len(value))
        return self.pattern.match(value)


class TestHostileValues:
    @pytest.mark.parametrize(
        ("value", "is_decimal"),
        [
            ("1", True),
            ("1.", True),
            ("1.5", True),
            (".5", True),
            ("-1e5", True),
            ("+2.5E-3", True),
            ("1.2.3", False),
            (".", False),
            ("e5", False),
            ("1e", False),
            ("1" * 50 + "x", False),
        ],
    )
    def test_the_decimal_pattern_takes_what_it_took_before(
        self, value: str, is_decimal: bool
    ) -> None:
        assert bool(csv_profile._DECIMAL.match(value)) is is_decimal

    def test_a_long_digit_run_never_reaches_a_pattern_whole(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # "1"*n + "x" made the old decimal pattern backtrack in O(n^2): 2.8 s at n = 8,000.
        spies = [_Spy(csv_profile._INTEGER), _Spy(csv_profile._DECIMAL)]
        monkeypatch.setattr(csv_profile, "_INTEGER", spies[0])
        monkeypatch.setattr(csv_profile, "_DECIMAL", spies[1])

        summary = _profile("12", "1" * 100_000 + "x", "2" * 100_000)

        assert summary["type"] == "string"
        assert max(length for spy in spies for length in spy.lengths) <= (
            csv_profile.MAX_NUMBER_CHARS
        )

    def test_a_long_value_is_not_parsed_as_a_datetime(self) -> None:
        assert _profile("2024-01-01", "2024-01-01" + " " * 10 + "x" * 100)["type"] == "string"
