"""``anytask report DIR``: the survey's claims (scenarios/claims/survey.toml) judged against run.json and
features.json, as DIR/report.md, a self-contained DIR/report.html and DIR/charts/*.png (docs/report.md)."""

from __future__ import annotations

import os
from collections.abc import Sequence

FORMATS = ("md", "html")


def write_report(directory: str, formats: Sequence[str] = FORMATS, claims_path: str | None = None,
                 features_path: str | None = None, docs_href: str | None = None) -> list[str]:
    """Read DIR/run.json (+ features.json) and write the report; returns the paths written.

    Deterministic: the same inputs give byte-identical files (no generation time, fixed PNG metadata).
    ``docs_href``: how the report links to the repository's docs/ (default: relative from DIR).
    """
    from . import charts, claims, data, document, html, markdown, verdicts

    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown report format(s) {', '.join(bad)}; known: {', '.join(FORMATS)}")
    cl = claims.load(claims_path)
    rd = data.load(directory, features_path)
    vs = verdicts.evaluate(cl, rd)
    paths = charts.write_all(rd, vs, list(cl.survey.get("libraries", [])), os.path.join(directory, "charts"))
    doc = document.build(rd, cl, vs, paths, docs_href)
    written = list(paths.values())
    if "md" in formats:
        p = os.path.join(directory, "report.md")
        with open(p, "w", encoding="utf-8") as fh:
            fh.write(markdown.render(doc))
        written.append(p)
    if "html" in formats:
        p = os.path.join(directory, "report.html")
        with open(p, "w", encoding="utf-8") as fh:
            fh.write(html.render(doc, directory))
        written.append(p)
    return written


__all__ = ["FORMATS", "write_report"]
