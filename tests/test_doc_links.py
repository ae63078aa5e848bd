"""Every relative link in the project's Markdown files resolves: the file (or
directory) exists in the source tree, and an anchor (``#…``) names a heading of
the target file, spelled as GitHub spells heading anchors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support import ROOT

# The Markdown files a reader follows links through (README.md is also the
# PyPI page; build outputs and vendored trees are not documentation).
DOC_GLOBS = ("*.md", "docs/**/*.md", "bench/**/*.md", "packaging/**/*.md", "tests/**/*.md")

INLINE = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # https:, mailto:, …


def doc_files() -> list[Path]:
    if not (ROOT / "README.md").exists():
        pytest.skip("runs from a source checkout (README.md)")
    found: set[Path] = set()
    for pattern in DOC_GLOBS:
        found.update(p for p in ROOT.glob(pattern)
                     if p.is_file() and not any(part in {"build", "dist", ".git"}
                                                for part in p.relative_to(ROOT).parts))
    return sorted(found)


def without_code(text: str) -> str:
    """The text outside fenced code blocks and inline code spans."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.MULTILINE | re.DOTALL)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    return re.sub(r"(`+)(?:(?!\1).)+?\1", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation
    other than '-' and '_' removed, each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = re.sub(r"[`*]|<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings (duplicates numbered -1, -2, …)."""
    seen: dict[str, int] = {}
    result = set()
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", path.read_text(),
                  flags=re.MULTILINE | re.DOTALL)
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.MULTILINE):
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def links(path: Path) -> list[str]:
    text = without_code(path.read_text())
    return [m.group(1) for pattern in (INLINE, IMAGE, REFERENCE)
            for m in pattern.finditer(text)]


def broken(path: Path, root: Path = ROOT) -> list[str]:
    """The relative links of `path` that do not resolve, each with the reason."""
    problems = []
    for target in links(path):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{target}: no such file {dest}")
            continue
        try:
            dest.relative_to(root)
        except ValueError:
            problems.append(f"{target}: outside the source tree")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{target}: no heading #{anchor} in {dest.relative_to(root)}")
    return problems


def test_the_guides_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in doc_files()}
    for expected in ("README.md", "CONTRIBUTING.md", "SECURITY.md", "bench/README.md",
                     "packaging/README.md", "tests/README.md", "docs/libraries.md",
                     "docs/cgroup-mode.md", "docs/live-processes.md", "docs/deploying.md",
                     "docs/coming-from-0.3.md"):
        assert expected in names


@pytest.mark.parametrize("path", doc_files() if (ROOT / "README.md").exists() else [],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path: Path) -> None:
    assert broken(path) == []


def test_readme_links_to_every_guide() -> None:
    readme = {target.partition("#")[0] for target in links(ROOT / "README.md")}
    for guide in (ROOT / "docs").glob("*.md"):
        assert guide.relative_to(ROOT).as_posix() in readme, guide.name


def test_the_checker_catches_a_broken_file_and_anchor(tmp_path: Path) -> None:
    """The check can fail: a missing file, a missing heading, a link inside
    code (ignored), and GitHub's spelling of a heading with punctuation."""
    (tmp_path / "a.md").write_text(
        "# Whose settings win: the program's or ours\n\n## Twice\n\n## Twice\n\n"
        "[ok](#whose-settings-win-the-programs-or-ours) [ok](b.md#coming-from-03)\n"
        "[second](#twice-1) [bad](#nowhere) [gone](missing.md) [web](https://example.org/x)\n"
        "`[code](nothere.md)`\n\n```\n[fenced](nothere.md)\n```\n")
    (tmp_path / "b.md").write_text("# Coming from `0.3`\n")
    assert anchors(tmp_path / "b.md") == {"coming-from-03"}
    problems = broken(tmp_path / "a.md", tmp_path)
    assert [p.split(":")[0] for p in problems] == ["#nowhere", "missing.md"]

