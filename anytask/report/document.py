"""The report's content as a small document model, rendered by markdown.py and html.py.

Keeping content and rendering apart means both formats say exactly the same thing, and every string
that comes from data is escaped in one place per format (the renderers), never here.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass, field
from typing import Any

from . import charts as CH
from . import claims as C
from . import faults, tables
from .data import RunData
from .verdicts import Verdict, counts, rankings, surprises


@dataclass(frozen=True)
class Link:
    text: str
    href: str


@dataclass(frozen=True)
class Strong:
    text: str


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Verd:
    """A verdict word (coloured in HTML)."""

    verdict: str


@dataclass(frozen=True)
class Anchor:
    """An anchor target placed before inline content."""

    name: str


Inline = str | Link | Strong | Code | Verd | Anchor
Text = list[Inline]


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass(frozen=True)
class Para:
    parts: Text


@dataclass(frozen=True)
class Bullets:
    items: list[Text]


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[Any]]  # cells are Text
    css: str = ""


@dataclass(frozen=True)
class Image:
    path: str  # relative to the report directory
    alt: str
    caption: str


@dataclass(frozen=True)
class Pre:
    text: str


@dataclass(frozen=True)
class Details:
    summary: str
    blocks: list[Any]


Block = Heading | Para | Bullets | Table | Image | Pre | Details


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)


KIND_TITLES = {
    "throughput": "Throughput table (S2, tasks/second)",
    "latency": "Latency table (S2)",
    "resource": "Resource usage table (S2)",
    "feature": "Feature tables (S2: Core Functionality, Advanced Features, Developer Experience)",
    "side": "Side claims (S2 library profiles, S3 use cases and rankings)",
}


TOP = 6  # entries per workload in the summary's ranking


def anchor(claim_id: str) -> str:
    return "claim-" + "".join(ch if ch.isalnum() else "-" for ch in claim_id)


def _utc(ts: Any) -> str:
    if not isinstance(ts, (int, float)):
        return "?"
    return datetime.datetime.fromtimestamp(float(ts), tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def docs_dir_href(directory: str) -> str:
    """The repository's docs/ folder, relative to the report directory (results/reference -> ../../docs)."""
    repo_docs = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs")
    return os.path.relpath(repo_docs, os.path.abspath(directory)).replace(os.sep, "/")


def build(data: RunData, claims: C.Claims, verdicts: list[Verdict], chart_paths: dict[str, str],
          docs_href: str | None = None) -> Document:
    doc = Document("anytask comparison report: the survey's claims against measurements")
    b = doc.blocks
    run = data.run
    docs = docs_href if docs_href is not None else docs_dir_href(data.directory)
    meth = f"{docs}/methodology.md"
    howto = f"{docs}/report.md"
    survey = claims.survey

    # ------------------------------------------------------------------ one-screen summary
    b.append(Heading(2, "Summary", "summary"))
    cnt = counts(verdicts)
    total = cnt.get("all", {})
    decided = sum(total.get(k, 0) for k in (C.CONFIRMED, C.PARTLY, C.REFUTED))
    b.append(Para([
        "Survey: ", Strong(str(survey.get("title", "?"))), f" ({survey.get('file', '?')}). ",
        f"{len(verdicts)} claims encoded in ", Code("scenarios/claims/survey.toml"), "; ",
        Strong(f"{total.get(C.CONFIRMED, 0)} of {decided} decided claims held"),
        (f" ({total.get(C.PARTLY, 0)} partly, {total.get(C.REFUTED, 0)} refuted); "
        f"{total.get(C.NOT_COMPARABLE, 0)} not comparable. "),
        (f"Run {run.get('run_id', '?')}: profile {run.get('profile', '?')}, {run.get('repeats', '?')} repeat(s), "
        f"{run.get('slots', '?')} slots per backend, {data.cpu_count} cores ({data.env.get('cpu_model', '?')}), "
        f"started {_utc(run.get('started'))}. "),
        Link("How to read this report", howto), ", ", Link("how each number is measured", meth), "."]))
    if data.merged:
        mp: Text = [Strong("Merged records:"), " some records of this run.json come from other runs, added with ",
                    Code("anytask bench merge"), " (", Link("details", "#merged"), "): "]
        for i, e in enumerate(data.merged):
            mp += (["; "] if i else []) + _merged_line(e)
        b.append(Para([*mp, "."]))
    rows: list[list[Any]] = []
    for kind in (*C.KINDS, "all"):
        if kind not in cnt:
            continue
        c = cnt[kind]
        rows.append([[Link(kind, f"#verdicts-{kind}") if kind != "all" else Strong("all")]]
                    + [[str(c[v])] for v in C.VERDICTS] + [[str(sum(c.values()))]])
    b.append(Table(["claims", *C.VERDICTS, "total"], rows, "counts"))
    sur = surprises(verdicts)
    if sur:
        b.append(Para([Strong("Biggest surprises")]))
        b.append(Bullets([[Link(v.claim.library, "#" + anchor(v.claim.id)), ": ", v.claim.label, " — ",
                           Verd(v.verdict), ": ", v.reason] for v in sur]))
    ranks = rankings(data)
    if ranks:
        b.append(Para([Strong("Ranking per workload"),
                       " (tuned configuration; throughput: highest median first; latency: lowest p50 first)"]))
        rrows = []
        for sc, rs in ranks.items():
            order = "; ".join(f"{i + 1}. {r.backend} {r.mode} {C.fmt(r.value)} {r.unit}"
                              for i, r in enumerate(rs[:TOP]))
            if len(rs) > TOP:
                order += f"; … {len(rs) - TOP} more (see the charts)"
            rrows.append([[Code(sc)], [order or "no data"]])
        b.append(Table(["workload", "ranking"], rrows, "ranking"))

    # ------------------------------------------------------------------ charts
    b.append(Heading(2, "Charts", "charts"))
    for name in CH.CHARTS:
        if name in chart_paths:
            rel = os.path.relpath(chart_paths[name], data.directory)
            b.append(Image(rel, CH.TITLES[name], CH.TITLES[name]))

    # ------------------------------------------------------------------ measured results (tables.py)
    b.extend(tables.blocks(data, meth))

    # ------------------------------------------------------------------ verdicts
    b.append(Heading(2, "Verdicts", "verdicts"))
    b.append(Para([("Each claim is decided by the rule written in survey.toml before the results were looked at "
                   "("), Link("rules explained", howto), ("). Measured values: native mode, tuned configuration, "
                   "median over repeats, the library's best broker. Links point to the raw per-task records "
                   "(relative to run.json) or to features.json.")]))
    b.append(Bullets(_rule_lines(claims)))
    for kind in C.KINDS:
        vs = [v for v in verdicts if v.claim.kind == kind]
        if not vs:
            continue
        b.append(Heading(3, f"{KIND_TITLES[kind]} — {len(vs)} claims", f"verdicts-{kind}"))
        if kind == "feature":
            vrows: list[list[Any]] = [[[Anchor(anchor(v.claim.id)), v.claim.row], [v.claim.library], [v.claim.claimed],
                     [Verd(v.verdict)], [v.measured], [v.reason]] for v in vs]
            b.append(Table(["row", "library", "survey", "verdict", "probe", "why"], vrows, "verdicts"))
        else:
            vrows = []
            for v in vs:
                what = v.claim.text or f"{v.claim.column}: {v.claim.claimed}"
                test = f"{v.claim.scenario} / {v.claim.metric}" if v.claim.scenario else (
                    f"probe {v.claim.probe_claim}" if v.claim.probe_claim else
                    ("probe " + ", ".join(v.claim.features) if v.claim.features else "—"))
                vrows.append([[Anchor(anchor(v.claim.id)), v.claim.library], [what], [test], [Verd(v.verdict)],
                             [v.measured or "—"], [v.reason]])
            b.append(Table(["library", "survey says", "tested by", "verdict", "measured", "why"], vrows, "verdicts"))
        ev_blocks: list[Any] = []
        items: list[Text] = []
        for v in vs:
            item: Text = [Link(v.claim.id, "#" + anchor(v.claim.id)), f" ({v.claim.section}): "]
            item.append("; ".join(v.evidence) if v.evidence else "no measurement")
            if v.links:
                item.append(" — records: ")
                seen = set()
                for i, (label, href) in enumerate(v.links):
                    if (label, href) in seen:
                        continue
                    seen.add((label, href))
                    if i:
                        item.append(", ")
                    item.append(Link(label, href))
            items.append(item)
        ev_blocks.append(Bullets(items))
        b.append(Details(f"Evidence for the {len(vs)} {kind} claims (sources, numbers, configurations, links)",
                         ev_blocks))

    # ------------------------------------------------------------------ reliability and soak (faults.py)
    b.extend(faults.blocks(data, meth))

    # ------------------------------------------------------------------ records not measured
    if data.errors:
        b.append(Heading(2, "Records without a measurement", "errors"))
        b.append(Para([f"{len(data.errors)} records of run.json carry an error and are left out of every figure."]))
        b.append(Details(f"The {len(data.errors)} records and their errors", [
            Table(["record", "scenario", "backend", "config", "mode", "error"],
                  [[[f"results[{i}]"], [r.get("scenario", "")], [r.get("backend", "")], [r.get("config", "")],
                    [r.get("mode", "")], [str(r.get("error", ""))]] for i, r in data.errors], "errors")]))

    # ------------------------------------------------------------------ appendix
    b.append(Heading(2, "Appendix: environment and configurations", "appendix"))
    b.append(Para(["All figures above come from ", Code("run.json"), " and ", Code("features.json"),
                   " in this directory. Measurement method: ", Link("docs/methodology.md", meth), "."]))
    b.append(Heading(3, "Environment", "environment"))
    env_rows = []
    for k in sorted(data.env):
        v = data.env[k]
        env_rows.append([[Code(k)], [v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)]])
    b.append(Table(["key", "value"], env_rows, "kv"))
    b.append(Heading(3, "Run parameters", "parameters"))
    prow = []
    for k in ("profile", "run_id", "seed", "slots", "repeats", "scenarios", "fallback", "interrupted",
              "instrumentation", "order"):
        if k in run:
            v = run[k]
            prow.append([[Code(k)], [v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)]])
    prow.append([[Code("started / finished")], [f"{_utc(run.get('started'))} / {_utc(run.get('finished'))}"]])
    b.append(Table(["key", "value"], prow, "kv"))
    b.extend(_merged_blocks(data))
    b.extend(_not_run_blocks(data, meth))
    b.extend(_timer_blocks(data, meth))
    b.append(Heading(3, "Configurations", "configurations"))
    crow = []
    for k in sorted(run.get("configs") or {}):
        cfg = (run.get("configs") or {})[k]
        crow.append([[Code(k)], [str(cfg.get("pool", ""))],
                     [json.dumps(cfg.get("knobs", {}), sort_keys=True, default=str) if cfg.get("knobs") else ""],
                     [Code(str(cfg.get("command") or cfg.get("url") or ""))]])
    b.append(Table(["backend / config / mode", "pool", "knobs", "command / URL"], crow, "configs"))
    b.append(Heading(3, "Raw broker ceilings", "ceilings"))
    ceil = run.get("ceilings") or {}
    b.append(Table(["tool", "figures"], [[[Code(k)], [_figures(ceil[k])]] for k in sorted(ceil)], "kv"))
    if data.features:
        f = data.features
        b.append(Heading(3, "Probes", "probes"))
        b.append(Para([(f"features.json: schema {f.get('schema', '?')}, generated {f.get('generated_at', '?')}, "
                       f"machine {json.dumps(f.get('machine', {}), sort_keys=True)}, "
                       f"{f.get('run_seconds', '?')} s. Versions: ")]))
        b.append(Bullets([[Code(lib), ": ", str((f.get("libraries") or {}).get(lib, {}).get("version", "?"))]
                          for lib in sorted(f.get("libraries") or {})]))
    return doc


def _commit(env: dict[str, Any]) -> str:
    return str(env.get("git_commit") or "?")[:12]


def _merged_line(e: dict[str, Any]) -> Text:
    """'soak (4 records) from run b2d265a5 (profile soak, 2026-11-29 ..., commit 135854f): note'."""
    env = e.get("environment") or {}
    return [", ".join(str(s) for s in e.get("scenarios") or []),
            f" ({e.get('records', '?')} records) from run ", Code(str(e.get("run_id", "?"))),
            f" (profile {e.get('profile', '?')}, started {_utc(e.get('started'))}, commit {_commit(env)})",
            ": “", str(e.get("why") or "no reason given"), "”"]


def _merged_blocks(data: RunData) -> list[Block]:
    if not data.merged:
        return []
    out: list[Block] = [Heading(3, "Merged runs", "merged"), Para([
        "The records of these scenarios were measured in another run and merged into this run.json with ",
        Code("anytask bench merge"), " (run.json ", Code("merged"), ("). The environment and configurations "
        "above are this run's; the merged run's own environment is summarised here (full in run.json).")])]
    own = data.env.get("packages") or {}
    rows = []
    for e in data.merged:
        env = e.get("environment") or {}
        pk = env.get("packages") or {}
        diff = [f"{k} {pk.get(k)} (here {own.get(k)})" for k in sorted(set(pk) | set(own)) if pk.get(k) != own.get(k)]
        versions = ("package versions as in this run" if not diff else "differs: " + "; ".join(diff))
        rows.append([[Code(str(e.get("run_id", "?")))], [str(e.get("profile", "?"))],
                     [f"{_utc(e.get('started'))} / {_utc(e.get('finished'))}"],
                     [", ".join(str(s) for s in e.get("scenarios") or [])], [str(e.get("records", "?"))],
                     [Code(_commit(env)), f"; Python {env.get('python', '?')}; {versions}"
                      + ("; interrupted" if e.get("interrupted") else "")],
                     [str(e.get("why") or "")]])
    out.append(Table(["run", "profile", "started / finished", "scenarios", "records", "commit, versions", "why"],
                     rows, "merged"))
    return out


def _not_run_blocks(data: RunData, meth: str) -> list[Block]:
    if not data.not_run:
        return []
    rows = []
    for n in data.not_run:
        cells = [str(c) for c in n.get("cells_not_run") or []]
        rows.append([[Code(str(n.get("scenario", "?")))],
                     [(f"configs {_words(n.get('configs'))}; modes {_words(n.get('modes'))}; "
                      f"repeats {_words(n.get('repeats'))}")],
                     [f"{len(cells)}: {', '.join(cells)}"], [str(n.get("why") or "")]])
    return [Heading(3, "Cells not run by design", "not-run"),
            Para(["Scenarios the profile measures in some cells only (run.json ", Code("not_run"), "; ",
                  Link("time budget", f"{meth}#time-budget-what-is-cut-and-how-it-shows"), ("). These cells are "
                  "absent from every table above on purpose, not failed.")]),
            Table(["scenario", "runs in", "cells not run", "why"], rows, "not-run")]


def _words(v: Any) -> str:
    return ", ".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)


def _regular(label: str) -> bool:
    """A per-repeat session ("r1 rq+redis tuned native"), not one with workers of its own ("soak ...")."""
    first = label.split(" ", 1)[0]
    return first[:1] == "r" and first[1:].isdigit()


def _secs(v: float) -> str:
    return f"{v:.1f} s"


def _timer_blocks(data: RunData, meth: str) -> list[Block]:
    sessions = data.session_timers()
    rec = data.record_phases()
    if not sessions and not rec:
        return []
    out: list[Block] = [Heading(3, "Harness timers", "timers"), Para([
        "Where the run's wall time went (run.json ", Code("session_seconds"), ", ", Code("session_phases"),
        " and each record's ", Code("phase_s"), "): harness accounting, not figures of the backends (",
        Link("phase timers", f"{meth}#time-budget-what-is-cut-and-how-it-shows"), ")."])]
    regular = [(lbl, s) for lbl, s, _ in sessions if s is not None and _regular(lbl)]
    own = [(lbl, s) for lbl, s, _ in sessions if s is not None and not _regular(lbl)]
    totals: list[list[Any]] = []
    if regular:
        totals.append([["sessions (one per repeat, backend, configuration, mode)"], [str(len(regular))],
                       [_secs(sum(s for _, s in regular))]])
    per_own: dict[str, list[float]] = {}
    for lbl, sec in own:
        per_own.setdefault(lbl.split(" ", 1)[0], []).append(sec)
    for name, xs in per_own.items():
        totals.append([[Code(name), " (workers of its own)"], [str(len(xs))], [_secs(sum(xs))]])
    if isinstance(data.run.get("ceilings_seconds"), (int, float)):
        totals.append([["raw broker ceilings"], ["1"], [_secs(float(data.run["ceilings_seconds"]))]])
    if totals:
        out.append(Table(["what", "count", "seconds"], totals, "kv"))
    phases = data.phase_totals()
    if phases:
        out.append(Para([Strong("Per phase"), ", summed over the sessions that have it (", Code("session_phases"),
                         "):"]))
        out.append(Table(["phase", "sessions", "seconds"],
                         [[[Code(k)], [str(c)], [_secs(v)]] for k, v, c in phases], "kv"))
    if rec:
        out.append(Para([Strong("Per measurement phase"), ", summed over each scenario's records (",
                         Code("phase_s"), "):"]))
        out.append(Table(["scenario", "records", "seconds per phase"],
                         [[[Code(sc)], [str(n)], ["; ".join(f"{k} {_secs(v)}" for k, v in ph.items())]]
                          for sc, n, ph in rec], "kv"))
    if sessions:
        out.append(Details(f"Each of the {len(sessions)} timed sessions", [Table(
            ["session", "seconds", "phases"],
            [[[Code(lbl)], [_secs(s) if s is not None else "?"], ["; ".join(f"{k} {_secs(v)}" for k, v in ph.items())]]
             for lbl, s, ph in sessions], "timers")]))
    return out


def _figures(d: Any) -> str:
    """A dict of figures as 'key value' pairs, numbers to 3 significant digits (ms and rates keep their keys)."""
    if not isinstance(d, dict):
        return json.dumps(d, sort_keys=True, default=str)
    parts = []
    for k in sorted(d):
        v = d[k]
        txt = C.fmt(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
        parts.append(f"{k} {txt}")
    return "; ".join(parts)


def _rule_lines(claims: C.Claims) -> list[Text]:
    r = claims.rules
    tol = float(r.get("numeric", {}).get("tolerance", 0.25))
    rank = r.get("rank", {})
    spread = r.get("spread", {})
    return [
        [Strong("numeric"), (f" (a figure, a minimum or a range): within ±{tol:.0%} of the claim → confirmed; better "
                            "than that → partly (the survey understates); worse → refuted. Throughput per core.")],
        [Strong("rank"), (f" (Very Low…High): pairwise order against the other libraries; ≥ {rank.get('confirmed')} "
                         f"agreement → confirmed, ≥ {rank.get('partly')} → partly, else refuted (ties within "
                         f"{rank.get('tie', 0):.0%} count half).")],
        [Strong("spread"), (f" (variable / depends on broker): worst/best broker ≥ ×{spread.get('confirmed')} → "
                           f"confirmed, ≥ ×{spread.get('partly')} → partly.")],
        [Strong("lowest / order"), ": the library's rank among those measured, or the claimed order of a list."],
        [Strong("feature / probe"), (": the survey cell against the probe verdict (yes / partial or plugin / no), or "
                                    "the probe's holds flag.")],
    ]
