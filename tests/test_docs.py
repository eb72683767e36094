"""The repository's Markdown holds: every relative link resolves (the file, and the heading an
anchor names), and nothing points outside the repository to pages a clone does not have."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "node_modules", "build", "dist", "data"}

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
OUTSIDE = re.compile(r"\.\./shared/|(?<![\w/])shared/(spec|notes|payloads)/")


def markdown_files() -> list[Path]:
    """The Markdown a clone has: git's files when this is a checkout, else the tree."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        files = [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in ROOT.rglob("*.md") if not SKIP_DIRS & set(p.relative_to(ROOT).parts)]
    return sorted(files)


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans (they show, they do not link)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    text = prose(path.read_text(encoding="utf-8"))
    problems = []
    for target in INLINE_LINK.findall(text) + REFERENCE.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        file_part = file_part.split("?", 1)[0]
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            problems.append(f"{target}: no such file")
        elif root not in resolved.parents and resolved != root:
            problems.append(f"{target}: outside the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target}: no heading #{anchor} in {resolved.relative_to(root)}")
    return problems


FILES = markdown_files()


def test_the_markdown_files_are_found() -> None:
    names = {str(p.relative_to(ROOT)) for p in FILES}
    assert {"README.md", "docs/deployment.md", "docs/odoo-api.md"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken_links(path) == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_cites_pages_outside_the_repository(path: Path) -> None:
    """A clone has no ``../shared/``: what the docs cite lives in ``docs/``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [f"line {i}: {line.strip()}" for i, line in enumerate(lines, 1)
            if OUTSIDE.search(line)] == []  # fmt: skip


def test_the_checker_finds_what_it_is_for(tmp_path: Path) -> None:
    """Broken file, broken anchor, a link out of the tree; not links: code, external URLs."""
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (tmp_path / "outside.md").write_text("# Outside\n")
    (repo / "docs" / "other.md").write_text("# A heading, with `code`\n## Twice\n## Twice\n")
    page = repo / "page.md"
    page.write_text(
        "[ok](docs/other.md#a-heading-with-code) [gone](missing.md) [bad](docs/other.md#nope)\n"
        "[2nd](docs/other.md#twice-1) [out](../outside.md) [dir](docs/)\n"
        "[web](https://example.org/x.md) `[shown](not-a-link.md)`\n"
        "```\n[in a block](also-not.md)\n```\n[ref]: ./docs/other.md#twice\n[self](#top)\n"
        "# Top\n"
    )
    assert broken_links(page, repo) == [
        "missing.md: no such file",
        "docs/other.md#nope: no heading #nope in docs/other.md",
        "../outside.md: outside the repository",
    ]
