"""Render the report document as Markdown (``DIR/report.md``; charts referenced from ``charts/``)."""

from __future__ import annotations

import html
import re

from . import document as D

_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def esc(text: str) -> str:
    """Escape a data string for Markdown: no markup, no raw HTML, no table breaks, one line."""
    text = re.sub(r"\s+", " ", str(text))
    text = text.replace("&", "&amp;")
    text = _SPECIAL.sub(lambda m: {"<": "&lt;", ">": "&gt;", "|": "\\|"}.get(m.group(1), "\\" + m.group(1)), text)
    return text


def _href(href: str) -> str:
    return href.replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace("<", "%3C").replace(">", "%3E")


def inline(parts: D.Text) -> str:
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(esc(p))
        elif isinstance(p, D.Link):
            out.append(f"[{esc(p.text)}]({_href(p.href)})")
        elif isinstance(p, D.Strong):
            out.append(f"**{esc(p.text)}**")
        elif isinstance(p, D.Code):
            t = re.sub(r"\s+", " ", p.text).replace("|", "\\|")
            if any(ch in t for ch in "<>&`"):  # raw HTML-looking text: an escaped <code> element instead
                out.append("<code>" + html.escape(t, quote=True).replace("`", "&#96;") + "</code>")
            else:
                out.append(f"`{t}`")
        elif isinstance(p, D.Verd):
            out.append(f"**{esc(p.verdict)}**")
        elif isinstance(p, D.Anchor):
            out.append(f'<a id="{esc(p.name)}"></a>')
    return "".join(out)


def _block(b: object, lines: list[str]) -> None:
    if isinstance(b, D.Heading):
        lines += [f"{'#' * b.level} {esc(b.text)}", ""]
    elif isinstance(b, D.Para):
        lines += [inline(b.parts), ""]
    elif isinstance(b, D.Bullets):
        lines += [f"* {inline(i)}" for i in b.items] + [""]
    elif isinstance(b, D.Table):
        lines.append("| " + " | ".join(esc(h) for h in b.headers) + " |")
        lines.append("|" + "|".join(" --- " for _ in b.headers) + "|")
        for row in b.rows:
            lines.append("| " + " | ".join(inline(c) for c in row) + " |")
        lines.append("")
    elif isinstance(b, D.Image):
        lines += [f"![{esc(b.alt)}]({_href(b.path)})", "", f"*{esc(b.caption)}*", ""]
    elif isinstance(b, D.Pre):
        lines += ["```", b.text.replace("```", "'''"), "```", ""]
    elif isinstance(b, D.Details):
        lines += [f"**{esc(b.summary)}**", ""]
        for x in b.blocks:
            _block(x, lines)


def render(doc: D.Document) -> str:
    lines = [f"# {esc(doc.title)}", ""]
    for b in doc.blocks:
        _block(b, lines)
    return "\n".join(lines).rstrip() + "\n"
