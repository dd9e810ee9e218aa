"""The documentation holds together: every relative link and anchor in README.md and docs/*.md
resolves (GitHub-style anchors from headings, no network), and docs/cli.md is what
tools/clidoc.py generates from the parser today."""

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code removed."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(re.sub(r"`[^`]*`", "", line))
    return lines


def _anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to '-', repeats numbered."""
    seen: dict[str, int] = {}
    fenced = False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"#{1,6} (.*)", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            yield slug if count == 0 else f"{slug}-{count}"


def _broken(page: Path) -> list[str]:
    broken = []
    for line in _prose(page.read_text()):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked (no network)
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and anchor not in set(_anchors(dest)):
                broken.append(f"{page.name}: {target} (no such heading)")
    return broken


@pytest.mark.unit
def test_every_relative_link_and_anchor_resolves():
    assert len(PAGES) > 5
    assert [b for page in PAGES for b in _broken(page)] == []


@pytest.mark.unit
def test_the_checker_sees_a_broken_anchor(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A `b` c\n\n[ok](#a-b-c) [bad](#nope) [gone](missing.md)\n```\n[code](x.md)\n```\n")
    assert _broken(page) == ["page.md: #nope (no such heading)", "page.md: missing.md (no such file)"]


@pytest.mark.unit
def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


@pytest.mark.unit
def test_cli_reference_is_generated_from_the_parser():
    render = runpy.run_path(str(ROOT / "tools" / "clidoc.py"))["render"]
    assert (ROOT / "docs" / "cli.md").read_text() == render(), "stale: python tools/clidoc.py > docs/cli.md"
