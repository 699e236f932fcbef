"""Every relative link in README.md and docs/**/*.md points to a file or directory that exists.

Links inside fenced code blocks and inline code are not links; absolute URLs (http:, https:,
mailto:) and same-page anchors (#...) are not checked here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def relative_links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every relative link outside code."""
    out: list[tuple[int, str]] = []
    in_fence = False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        for m in LINK.finditer(INLINE_CODE.sub("", line)):
            target = m.group(1)
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
                continue
            out.append((n, target))
    return out


def test_the_link_finder_sees_links_and_skips_code() -> None:
    text = ("see [a](docs/a.md#x) and ![chart](img/c.png) and [web](https://x.org) and [top](#top)\n"
            "`[not](inline.md)`\n```\n[not](fenced.md)\n```\n[b](../b.md \"title\")\n")
    assert relative_links(text) == [(1, "docs/a.md#x"), (1, "img/c.png"), (6, "../b.md")]


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for n, target in relative_links(doc.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not path:
            continue
        if not (doc.parent / path).exists():
            broken.append(f"{doc.relative_to(ROOT)}:{n}: {target}")
    assert not broken, "broken relative links:\n" + "\n".join(broken)
