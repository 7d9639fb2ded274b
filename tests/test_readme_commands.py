"""Every `vaekit` command line the README shows in its code blocks parses with the CLI's own argument
parser: a flag renamed or removed cannot survive in the documentation."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from vaekit.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]


def shown_commands(path: Path) -> list[tuple[int, str]]:
    """(line number, command) of each `vaekit ...` in the fenced code blocks of a Markdown file; a line may
    chain several with && and carry a comment and optional parts in [brackets]."""
    found, fenced, pending = [], False, ""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            continue
        code = pending + " " + line.split(" #", 1)[0].strip()
        if code.endswith("\\"):  # continued on the next line
            pending = code[:-1]
            continue
        pending, code = "", code.strip()
        for part in code.split("&&"):
            part = part.strip()
            if part.startswith("vaekit "):
                found.append((number, re.sub(r"[\[\]]", "", part)))
    return found


CASES = [(f"{p.name}:{n}", c) for p in DOCUMENTS for n, c in shown_commands(p)]


def test_the_readme_shows_commands():
    assert len(CASES) > 30


@pytest.mark.parametrize("where, command", CASES, ids=[w for w, _ in CASES])
def test_a_shown_command_parses(where, command):
    words = shlex.split(command)[1:]
    try:
        build_parser().parse_args(words)
    except SystemExit as e:  # argparse's refusal
        pytest.fail(f"{where}: `{command}` does not parse (exit {e.code})")
