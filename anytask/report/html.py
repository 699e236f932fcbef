"""Render the report document as one self-contained HTML file (charts embedded as data: URIs, no network,
no scripts). Every string from data goes through ``html.escape``."""

from __future__ import annotations

import base64
import html
import os

from . import claims as C
from . import document as D

CSS = """
body{font-family:"DejaVu Sans",Arial,Helvetica,sans-serif;font-size:14px;line-height:1.45;color:#222;margin:0;
 background:#fff}
main{max-width:1240px;margin:0 auto;padding:16px 20px}
h1{font-size:24px;margin:8px 0 12px}h2{font-size:20px;margin-top:28px;border-bottom:1px solid #ddd}
h3{font-size:16px;margin-top:22px}
table{border-collapse:collapse;width:100%;margin:8px 0 14px;font-size:13px}
th,td{border:1px solid #d0d0d0;padding:4px 6px;vertical-align:top;text-align:left;overflow-wrap:break-word}
table.kv td,table.configs td,table.errors td{overflow-wrap:anywhere}
th{background:#f2f2f2;position:sticky;top:0}
table.counts,table.kv{width:auto;max-width:100%}
table.kv td:first-child,table.ranking td:first-child{white-space:nowrap}
table.verdicts td:first-child{white-space:nowrap}
table.verdicts td:nth-child(3){word-break:break-word;min-width:9em}
.v{white-space:nowrap}
code{font-family:"DejaVu Sans Mono",monospace;font-size:12px;background:#f6f6f6;padding:0 2px}
figure{margin:12px 0 22px}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-style:italic;color:#555;font-size:13px}
.v{padding:1px 6px;border-radius:3px;font-weight:bold;white-space:nowrap}
.v-confirmed{background:#a1d99b}.v-partly{background:#fee391}.v-refuted{background:#fc9272}
.v-not-comparable{background:#d9d9d9}
details{margin:6px 0 16px}summary{cursor:pointer;color:#225}
nav a{margin-right:12px}
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def inline(parts: D.Text) -> str:
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(esc(p))
        elif isinstance(p, D.Link):
            out.append(f'<a href="{esc(p.href)}">{esc(p.text)}</a>')
        elif isinstance(p, D.Strong):
            out.append(f"<strong>{esc(p.text)}</strong>")
        elif isinstance(p, D.Code):
            out.append(f"<code>{esc(p.text)}</code>")
        elif isinstance(p, D.Verd):
            cls = p.verdict.replace(" ", "-") if p.verdict in C.VERDICTS else "unknown"
            out.append(f'<span class="v v-{esc(cls)}">{esc(p.verdict)}</span>')
        elif isinstance(p, D.Anchor):
            out.append(f'<span id="{esc(p.name)}"></span>')
    return "".join(out)


def _data_uri(path: str) -> str:
    with open(path, "rb") as fh:
        return "data:image/png;base64," + base64.b64encode(fh.read()).decode("ascii")


def _block(b: object, out: list[str], directory: str) -> None:
    if isinstance(b, D.Heading):
        ident = f' id="{esc(b.anchor)}"' if b.anchor else ""
        out.append(f"<h{b.level}{ident}>{esc(b.text)}</h{b.level}>")
    elif isinstance(b, D.Para):
        out.append(f"<p>{inline(b.parts)}</p>")
    elif isinstance(b, D.Bullets):
        out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in b.items) + "</ul>")
    elif isinstance(b, D.Table):
        cls = f' class="{esc(b.css)}"' if b.css else ""
        head = "".join(f"<th>{esc(h)}</th>" for h in b.headers)
        rows = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in b.rows)
        out.append(f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    elif isinstance(b, D.Image):
        src = _data_uri(os.path.join(directory, b.path))
        out.append(f'<figure><img src="{src}" alt="{esc(b.alt)}"><figcaption>{esc(b.caption)} '
                   f'(<a href="{esc(b.path)}">{esc(b.path)}</a>)</figcaption></figure>')
    elif isinstance(b, D.Pre):
        out.append(f"<pre>{esc(b.text)}</pre>")
    elif isinstance(b, D.Details):
        out.append(f"<details><summary>{esc(b.summary)}</summary>")
        for x in b.blocks:
            _block(x, out, directory)
        out.append("</details>")


def render(doc: D.Document, directory: str) -> str:
    nav = " ".join(f'<a href="#{a}">{t}</a>' for a, t in (("summary", "Summary"), ("charts", "Charts"),
                                                         ("verdicts", "Verdicts"), ("appendix", "Appendix")))
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
           "style-src 'unsafe-inline'\">"),
           f"<title>{esc(doc.title)}</title><style>{CSS}</style></head><body><main>",
           f"<h1>{esc(doc.title)}</h1>", f"<nav>{nav}</nav>"]
    for b in doc.blocks:
        _block(b, out, directory)
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"
