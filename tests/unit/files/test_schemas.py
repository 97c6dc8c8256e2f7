from __future__ import annotations

import uuid

import pytest
from pydantic import BaseModel, ValidationError

from app.files.schemas import FileCreate, check_content_type, check_filename
from app.files.storage import content_disposition
from app.tasktypes.filerefs import FileRef, collect_file_refs


class TestFilename:
    @pytest.mark.parametrize("name", ["a.txt", "résumé 2024.pdf", "x" * 255, ".env", "日本.csv"])
    def test_plain_names_are_accepted(self, name: str) -> None:
        assert check_filename(name) == name

    @pytest.mark.parametrize(
        "name",
        [
            "",
            "x" * 256,
            "a/b",
            "..\\x",
            ".",
            "..",
            "nul\x00.txt",
            "tab\t.txt",
            "\x7f",
            "invoice\u202etxt.exe",  # right-to-left override: reads as invoiceexe.txt
            "pay\u200broll.csv",  # zero-width space: a look-alike of payroll.csv
            "\ufeffreport.pdf",  # byte order mark
        ],
    )
    def test_paths_control_characters_and_oversize_names_are_refused(self, name: str) -> None:
        with pytest.raises(ValueError, match="must"):
            check_filename(name)


class TestContentType:
    @pytest.mark.parametrize(
        "value",
        ["image/png", "text/csv; charset=utf-8", "application/vnd.ms-excel", 'a/b;x="y z"'],
    )
    def test_media_types_are_accepted(self, value: str) -> None:
        assert check_content_type(value) == value

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "png",
            "text/",
            "text/csv\r\nX-Evil: 1",
            "image/png\n",  # `$` would take it: matched whole, it is refused
            "a/b\x00",
            "a/b; c",
            "x" * 300,
        ],
    )
    def test_anything_unsafe_as_a_header_is_refused(self, value: str) -> None:
        with pytest.raises(ValueError, match="media type"):
            check_content_type(value)


class TestFileCreate:
    def test_a_negative_size_is_refused(self) -> None:
        with pytest.raises(ValidationError):
            FileCreate(filename="a", content_type="a/b", size=-1)

    def test_unknown_fields_are_refused(self) -> None:
        with pytest.raises(ValidationError):
            FileCreate.model_validate(
                {"filename": "a", "content_type": "a/b", "size": 1, "key": "projects/x"}
            )


class TestContentDisposition:
    def test_the_exact_name_is_percent_encoded_with_an_ascii_fallback(self) -> None:
        header = content_disposition('ré"sumé.pdf')

        assert header == (
            "attachment; filename=\"r__sum_.pdf\"; filename*=UTF-8''r%C3%A9%22sum%C3%A9.pdf"
        )


class _Nested(BaseModel):
    file_id: FileRef
    note: str = ""


class _Input(BaseModel):
    single: FileRef
    many: list[FileRef]
    nested: list[_Nested]


class TestFileRefs:
    def test_every_reference_is_found_with_its_location(self) -> None:
        ids = [uuid.uuid4() for _ in range(4)]
        parsed = _Input.model_validate(
            {
                "single": str(ids[0]),
                "many": [str(ids[1]), str(ids[2])],
                "nested": [{"file_id": str(ids[3])}],
            }
        )

        found = list(collect_file_refs(parsed))

        assert found == [
            (("single",), ids[0]),
            (("many", 0), ids[1]),
            (("many", 1), ids[2]),
            (("nested", 0, "file_id"), ids[3]),
        ]
        assert all(isinstance(ref, FileRef) for _, ref in found)

    def test_the_json_schema_is_a_uuid_string(self) -> None:
        schema = _Input.model_json_schema()

        assert schema["properties"]["single"]["type"] == "string"
        assert schema["properties"]["single"]["format"] == "uuid"

    def test_a_file_ref_dumps_as_its_uuid(self) -> None:
        file_id = uuid.uuid4()
        parsed = _Nested(file_id=FileRef(int=file_id.int))

        assert parsed.model_dump(mode="json") == {"file_id": str(file_id), "note": ""}
