"""Write the command-line reference (docs/cli.md) from `fsanet.cli.build_parser()`.

Usage: `python tools/clidoc.py > docs/cli.md`; tests/test_docs.py fails when the page is stale.
Lives outside the package so the wheel does not ship it.
"""

import argparse
import os
import sys


def _commands(parser: argparse.ArgumentParser, name: str):
    """(name, parser) for the parser and every subcommand below it, in the parser's order."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from _commands(child, f"{name} {sub}")


def render() -> str:
    """The Markdown page; a fixed width so the text does not depend on the terminal."""
    from fsanet.cli import build_parser

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal's width
    try:
        commands = [(name, parser.format_help()) for name, parser in _commands(build_parser(), "fsanet")]
    finally:
        os.environ.pop("COLUMNS") if columns is None else os.environ.update(COLUMNS=columns)

    parts = [
        "# Command-line reference\n",
        "Generated from `fsanet.cli.build_parser()` by `python tools/clidoc.py > docs/cli.md`; "
        "do not edit by hand. Exit codes: 0 success, 1 a budget violated, 2 bad input or usage, "
        "3 an internal error.\n",
    ]
    for name, text in commands:
        parts.append(f"## `{name}`\n\n```text\n{text.rstrip()}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render())
