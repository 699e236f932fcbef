"""The report's reliability and soak tables (records of scenarios ``reliability-*`` and ``soak``).

A run.json without such records (a quick run, or one made before they existed) gives no blocks at all,
so such a report stays byte-for-byte what it was.
"""

from __future__ import annotations

from typing import Any

from . import claims as C
from .data import RunData


def _records(data: RunData, pred: Any) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for i, rec in enumerate(data.run.get("results") or []):
        if pred(str(rec.get("scenario", ""))):
            out.append((i, rec))
    return out


def _mb(x: Any) -> str:
    return "—" if x is None else f"{C.fmt(x)} MB"


def _pct(x: Any) -> str:
    return "—" if x is None else f"{x * 100:+.1f} %"


def _yes(x: Any) -> str:
    return {True: "yes", False: "NO"}.get(x, "—")


def short_promise(delivery: Any) -> str:
    """``at-most-once (why ...)`` -> ``at-most-once``: the table cell; the full text is listed below it."""
    text = str(delivery or "—")
    return text.split(" (", 1)[0].strip() or text


def reliability_rows(data: RunData) -> list[list[str]]:
    """One row per reliability record: backend, declared promise, fault, config, held?, lost, duplicates..."""
    rows = []
    recs = _records(data, lambda s: s.startswith("reliability-"))
    recs.sort(key=lambda t: (str(t[1].get("backend")), str(t[1].get("scenario")), str(t[1].get("config"))))
    for i, r in recs:
        d = r.get("details") or {}
        fault = str(d.get("fault") or str(r.get("scenario", "")).removeprefix("reliability-"))
        if r.get("error"):
            what = "not applicable" if "not-applicable" in (r.get("flags") or ()) else "error"
            rows.append([str(r.get("backend")), short_promise(d.get("delivery")), fault, str(r.get("config")), what,
                         "—", "—", "—", "—", str(r.get("error"))[:160]])
            continue
        n = int(r.get("n") or 0)
        rec_s = d.get("recovery_s")
        timing = (f"last end {C.fmt(rec_s)} s after the fault" if rec_s is not None else "nothing ended after the fault")
        if d.get("broker_down_s") is not None:
            timing += f"; broker back after {C.fmt(d['broker_down_s'])} s, deadline {C.fmt(d.get('deadline_s'))} s after that"
        else:
            timing += f"; deadline {C.fmt(d.get('deadline_s'))} s"
        if d.get("worker_restarts"):
            timing += f"; workers started again: {d['worker_restarts']}"
        rows.append([str(r.get("backend")), short_promise(d.get("delivery")), fault, str(r.get("config")),
                     _yes(r.get("at_least_once_held")), f"{r.get('lost', 0)} / {n}", str(r.get("duplicated", 0)),
                     str(d.get("redelivered", "—")), f"{d.get('running_at_fault', '—')}", timing])
    return rows


def reliability_matrix(data: RunData) -> tuple[list[str], list[list[str]]]:
    """One row per backend, one column per (fault, config): "yes: 0 lost, 2 dup" / "NO: 9 lost, 0 dup"."""
    recs = [r for _, r in _records(data, lambda s: s.startswith("reliability-"))]
    cols = sorted({(str((r.get("details") or {}).get("fault") or str(r.get("scenario")).removeprefix("reliability-")),
                    str(r.get("config"))) for r in recs}, key=lambda c: (c[0], c[1] != "defaults", c[1]))
    cells: dict[tuple[str, str, str], str] = {}
    promise: dict[str, dict[str, str]] = {}
    for r in recs:
        d = r.get("details") or {}
        b = str(r.get("backend"))
        fault = str(d.get("fault") or str(r.get("scenario")).removeprefix("reliability-"))
        if d.get("delivery"):
            promise.setdefault(b, {})[str(r.get("config"))] = short_promise(d["delivery"])
        if r.get("error"):
            cell = "n/a" if "not-applicable" in (r.get("flags") or ()) else "error"
        else:
            cell = f"{_yes(r.get('at_least_once_held'))}: {r.get('lost', 0)} lost, {r.get('duplicated', 0)} dup"
        cells[(b, fault, str(r.get("config")))] = cell
    backends = sorted({b for b, _, _ in cells})
    rows = [[b, _promises(promise.get(b, {})), *[cells.get((b, f, c), "—") for f, c in cols]] for b in backends]
    return [f"{f} / {c}" for f, c in cols], rows


def _promises(by_config: dict[str, str]) -> str:
    """``at-most-once`` when every configuration promises the same, else ``defaults: …; reliable: …``."""
    if not by_config:
        return "—"
    if len(set(by_config.values())) == 1:
        return next(iter(by_config.values()))
    return "; ".join(f"{c}: {p}" for c, p in sorted(by_config.items(), key=lambda t: (t[0] != "defaults", t[0])))


def declarations(data: RunData) -> list[tuple[str, str]]:
    """(backend / config, declared delivery text) as recorded with the reliability records."""
    out: dict[str, str] = {}
    for _, r in _records(data, lambda s: s.startswith("reliability-")):
        d = r.get("details") or {}
        if d.get("delivery"):
            out[f"{r.get('backend')} / {r.get('config')}"] = str(d["delivery"])
    return sorted(out.items())


def soak_rows(data: RunData) -> list[list[str]]:
    rows = []
    recs = _records(data, lambda s: s == "soak")
    recs.sort(key=lambda t: str(t[1].get("backend")))
    for _, r in recs:
        d = r.get("details") or {}
        if r.get("error"):
            what = "not applicable" if "not-applicable" in (r.get("flags") or ()) else "error"
            rows.append([str(r.get("backend")), what, "—", "—", "—", "—", "—", str(r.get("error"))[:160]])
            continue
        wk, cl = d.get("rss_worker") or {}, d.get("rss_client") or {}
        before, after, ttl = d.get("redis_before"), d.get("redis_after"), d.get("redis_after_ttl")
        if before and ttl:
            redis = (f"keys {before['keys']} → {after['keys'] if after else '?'} → {ttl['keys']}; used_memory "
                     f"{C.fmt(before['used_memory'] / 2**20)} → {C.fmt(ttl['used_memory'] / 2**20)} MB after "
                     f"{C.fmt(d.get('expired_in_s'))} s; returned: {_yes(d.get('redis_returned'))}")
        else:
            redis = "no Redis"
        capped = [f for f in (r.get("flags") or ()) if f.startswith("time-capped")]
        tasks = f"{d.get('ends', r.get('completed'))} / {d.get('submitted', r.get('n'))}" + (
            f" ({capped[0]})" if capped else "")
        rows.append([str(r.get("backend")), tasks, f"{C.fmt(d.get('wall_s'))} s ({C.fmt(d.get('throughput'))} tasks/s)",
                     f"{_mb(wk.get('baseline_mb'))} → {_mb(wk.get('end_mb'))} ({_pct(wk.get('growth'))})",
                     f"{_mb(cl.get('baseline_mb'))} → {_mb(cl.get('end_mb'))} ({_pct(cl.get('growth'))})",
                     f"{C.fmt(d.get('result_ttl'))} s", redis, ", ".join(r.get("flags") or ()) or "—"])
    return rows


def blocks(data: RunData, methodology_href: str) -> list[Any]:
    """Report blocks for the reliability and soak records of the run (none when it has none)."""
    from .document import Bullets, Code, Details, Heading, Link, Para, Strong, Table

    out: list[Any] = []
    rel = reliability_rows(data)
    if rel:
        heads, matrix = reliability_matrix(data)
        out.append(Heading(2, "Reliability under faults", "reliability"))
        out.append(Para([
            "Facade mode. N tasks of 50 ms per cell; the fault comes when 30 % of them have ended and a task is "
            "running. kill = SIGKILL of every worker process (main, pool children, job processes), then the same "
            "worker started again; restart = restart of a test-owned persistent broker (never the shared one). "
            "Counted per task id from the workers' stamp files: ", Strong("at-least-once held"),
            " = no task lost by the deadline; lost = never ended; dup = ended more than once. Promise = the "
            "backend's capability declaration for each configuration (full text below). A "
            "library that gives a dead worker's messages back only after a timeout longer than the deadline "
            "shows them as lost. ", Link("Method", methodology_href + "#reliability-scenarios"), "."]))
        out.append(Table(["backend", "promise (declared)", *heads], [[[c] for c in row] for row in matrix],
                         "reliability"))
        out.append(Details(f"Every reliability record ({len(rel)}): redeliveries, timing, errors", [
            Table(["backend", "promise", "fault", "config", "at-least-once held?", "lost / N", "duplicates",
                   "redelivered", "running at fault", "timing"], [[[c] for c in row] for row in rel],
                  "reliability"),
            Bullets([[Code(b), ": ", text] for b, text in declarations(data)])]))
    soak = soak_rows(data)
    if soak:
        out.append(Heading(2, "Soak", "soak"))
        out.append(Para([
            "Facade mode, defaults; every task with a short result TTL. RSS growth = median of the last five samples "
            "under load / median of the first five after warm-up (10 % of the tasks) − 1; flagged over 10 %. Redis: "
            "keys and used_memory of the bench database before the first submit → after the last task ended → after "
            "the result TTL (a few keys of the readiness ping, kept for the default TTL, stay). ",
            Link("Method", methodology_href + "#soak"), "."]))
        out.append(Table(["backend", "ended / submitted", "wall", "worker RSS", "client RSS", "result TTL",
                          "Redis", "flags"], [[[c] for c in row] for row in soak], "soak"))
    return out
