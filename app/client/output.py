"""What commands print on stdout: `json` (the API's objects as they are, for scripts; lists as
`{items, next_cursor}`) or `table` (for people). Messages and progress go to stderr."""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Wide enough that a piped table is never wrapped or cut (rows stay greppable).
PIPED_WIDTH = 10_000


class Output(enum.StrEnum):
    table = "table"
    json = "json"


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[dict[str, Any]], Any]


def field(header: str, key: str | None = None) -> Column:
    name = key or header
    return Column(header, lambda item: item.get(name))


def stdout_console() -> Console:
    return Console(
        width=None if sys.stdout.isatty() else PIPED_WIDTH, highlight=False, soft_wrap=False
    )


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def cell(value: Any) -> Text:
    """One value as plain text (never read as rich markup): JSON for objects and lists."""
    if value is None:
        return Text("")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if isinstance(value, dict | list):
        return Text(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
    return Text(str(value))


def write_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def show_object(value: dict[str, Any], output: Output) -> None:
    """One object: as JSON, or a two-column table of its fields."""
    if output is Output.json:
        write_json(value)
        return
    table = Table(box=box.SIMPLE, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, item in value.items():
        table.add_row(Text(key), cell(item))
    stdout_console().print(table)


def show_page(page: dict[str, Any], output: Output, columns: Sequence[Column]) -> None:
    """A list: as `{items, next_cursor}`, or a table of `columns` (and the cursor on stderr)."""
    if output is Output.json:
        write_json(page)
        return
    table = Table(box=box.SIMPLE, pad_edge=False)
    for column in columns:
        table.add_column(column.header.upper(), overflow="fold")
    for item in page["items"]:
        table.add_row(*(cell(column.value(item)) for column in columns))
    if page["items"]:
        stdout_console().print(table)
    else:
        stderr_console().print("(none)")
    if page.get("next_cursor"):
        stderr_console().print(f"more: --cursor {page['next_cursor']} (or --all)")
