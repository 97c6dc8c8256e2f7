"""docs/reliability.md names only tests that exist: each `tests/…py::Class::test` it cites is a
file of the suite defining that class and test (read with `ast`, nothing imported), and each
`tests/…py` it names alone is a file."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.support import REPO_ROOT

PAGE = REPO_ROOT / "docs" / "reliability.md"

# `tests/a/b.py::TestClass::test_name`, `tests/a/b.py::test_name`, or the file alone; a
# parametrized id (`[…]`) names the same test.
REFERENCE = re.compile(r"(tests/[\w/]+\.py)((?:::\w+)*)(?:\[[^\]\s`]*\])?")


def _references(text: str) -> list[tuple[str, list[str]]]:
    """(the file, the names after it) of every test reference in `text`, in order."""
    return [(match[1], match[2].split("::")[1:]) for match in REFERENCE.finditer(text)]


def _defines(body: list[ast.stmt], names: list[str]) -> bool:
    """Whether `body` defines the test class / test function chain `names` (none: it exists)."""
    if not names:
        return True
    first, rest = names[0], names[1:]
    for node in body:
        if rest and isinstance(node, ast.ClassDef) and node.name == first:
            return first.startswith("Test") and _defines(node.body, rest)
        if (
            not rest
            and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name == first
        ):
            return first.startswith("test")
    return False


def missing(text: str, root: Path) -> list[str]:
    """Every reference in `text` whose file under `root` does not define the test it names."""
    parsed: dict[str, ast.Module | None] = {}
    absent = []
    for path, names in _references(text):
        if path not in parsed:
            file = root / path
            parsed[path] = ast.parse(file.read_text(), filename=path) if file.is_file() else None
        module = parsed[path]
        if module is None or not _defines(module.body, names):
            absent.append("::".join([path, *names]))
    return absent


def test_every_test_the_page_names_exists() -> None:
    assert missing(PAGE.read_text(), REPO_ROOT) == []


def test_the_page_names_tests_of_each_kind_of_suite() -> None:
    paths = {path for path, _ in _references(PAGE.read_text())}

    for suite in ("tests/chaos/", "tests/e2e/", "tests/integration/", "tests/unit/"):
        assert any(path.startswith(suite) for path in paths), suite


def test_a_name_that_is_not_a_test_of_its_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(
        "class TestA:\n"
        "    async def test_b(self) -> None: ...\n"
        "    def helper(self) -> None: ...\n"
        "def test_c() -> None: ...\n"
    )
    page = (
        "`tests/test_x.py::TestA::test_b` `tests/test_x.py::test_c[1-2]` "
        "`tests/test_x.py::TestA::test_c` `tests/test_x.py::test_b` "
        "`tests/test_x.py::TestA::helper` `tests/test_x.py::TestA` "
        "`tests/test_y.py::test_c` `tests/test_x.py` `tests/test_z.py`"
    )

    assert missing(page, tmp_path) == [
        "tests/test_x.py::TestA::test_c",
        "tests/test_x.py::test_b",
        "tests/test_x.py::TestA::helper",
        "tests/test_x.py::TestA",
        "tests/test_y.py::test_c",
        "tests/test_z.py",
    ]
