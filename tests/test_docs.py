"""The README and docs/ point at files that exist: a renamed module or page breaks this test, not a reader."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _mentions(text: str):
    # links [..](path) and code spans naming a file of the repository
    for m in re.finditer(r"\]\(([^)#\s]+)\)", text):
        if "://" not in m.group(1):
            yield m.group(1), "link"
    for m in re.finditer(r"`([\w.-]+/[\w/.-]+\.(?:py|md|safetensors))", text):
        yield m.group(1), "path"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_file_a_page_names_exists(page):
    missing = []
    for target, kind in _mentions(page.read_text()):
        base = page.parent if kind == "link" else ROOT
        if not ((base / target).exists() or (ROOT / "synchformer" / target).exists()):
            missing.append(target)
    assert not missing, f"{page.name} names files that do not exist: {missing}"


def test_the_readme_stays_a_users_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 260, len(lines)
