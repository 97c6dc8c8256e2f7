"""Command-line options the harness's entry points share."""

from __future__ import annotations

import argparse


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """`--set TASKGATE_X=VALUE`, repeatable: a setting of taskgate's processes for this run."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TASKGATE_X=VALUE",
        help="a setting of taskgate's processes for this run (repeatable; kept in the JSON)",
    )


def overrides_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """The `--set` settings as environment variables; a malformed one is a usage error."""
    overrides = {}
    for item in args.set:
        name, equals, value = item.partition("=")
        if not equals or not name.startswith("TASKGATE_"):
            parser.error(f"--set takes TASKGATE_NAME=VALUE, not {item!r}")
        overrides[name] = value
    return overrides
