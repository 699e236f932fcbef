"""The report's measured-results tables: the figures behind the charts, as numbers.

One row per backend and configuration, native beside facade, each figure the median over repeats with its
min–max; every value is read from run.json's records (through ``RunData`` groups), none is computed from
anything else than those records and the run's raw broker ceilings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..bench.summary import broker_floor
from . import claims as C
from .data import Group, RunData, Stat, path_getter

Row = list[list[Any]]

DRAINS = ("throughput-noop", "throughput-io", "throughput-cpu", "payload-1KiB", "payload-64KiB")
LATENCIES = ("latency-sporadic", "latency-steady")
MODES = ("native", "facade")


def _stat(s: Stat | None, unit: str = "", digits: int = 3) -> str:
    if s is None:
        return "—"
    text = C.fmt(s.median, digits)
    if s.n > 1:
        text += f" [{C.fmt(s.min, digits)}–{C.fmt(s.max, digits)}]"
    return text + unit


def _ratio(a: Stat | None, b: Stat | None) -> str:
    if a is None or b is None or not b.median:
        return "—"
    return f"×{a.median / b.median:.2f}"


def _floor(data: RunData, backend: str) -> dict[str, Any]:
    return broker_floor(data.run.get("ceilings") or {}, backend) or {}


def _pairs(data: RunData, scenario: str, workers: int | None = None) -> list[tuple[str, str, dict[str, Group]]]:
    """(backend, config, {mode: group}) for one scenario, sorted by backend then config."""
    out: dict[tuple[str, str], dict[str, Group]] = {}
    for g in data.where(scenario=scenario):
        if workers is not None and g.workers != workers:
            continue
        out.setdefault((g.backend, g.config), {})[g.mode] = g
    return [(b, c, modes) for (b, c), modes in sorted(out.items())]


def _flags(modes: dict[str, Group]) -> str:
    fl = [f"{m}: {', '.join(modes[m].flags)}" for m in MODES if m in modes and modes[m].flags]
    return "; ".join(fl) or "—"


def _stats(modes: dict[str, Group], getter: Callable[[dict[str, Any]], Any]) -> dict[str, Stat | None]:
    return {m: (modes[m].stat(getter) if m in modes else None) for m in MODES}


def _pool(modes: dict[str, Group]) -> str:
    g = modes.get("native") or modes.get("facade")
    return f"{g.slots} slots" if g else "—"


def headline_rows(data: RunData) -> Row:
    """Per backend and configuration: noop drain rate and sporadic p50, native vs facade."""
    keys = sorted({(g.backend, g.config) for g in data.select(lambda g: g.scenario in ("throughput-noop",
                                                                                       "latency-sporadic"))})
    rows: Row = []
    tp, p50 = path_getter("throughput"), path_getter("latency_ms.p50")
    for backend, config in keys:
        d = {m: data.group("throughput-noop", backend, config, m) for m in MODES}
        s = {m: data.group("latency-sporadic", backend, config, m) for m in MODES}
        dt = {m: (g.stat(tp) if g else None) for m, g in d.items()}
        sl = {m: (g.stat(p50) if g else None) for m, g in s.items()}
        rows.append([[backend], [config], [_stat(dt["native"])], [_stat(dt["facade"])],
                     [_ratio(dt["facade"], dt["native"])], [_stat(sl["native"])], [_stat(sl["facade"])],
                     [_ratio(sl["facade"], sl["native"])]])
    return rows


def drain_rows(data: RunData, scenario: str) -> Row:
    rows: Row = []
    tp, eff, enq = path_getter("throughput"), path_getter("efficiency"), path_getter("enqueue_rate")
    for backend, config, modes in _pairs(data, scenario):
        t, e, q = _stats(modes, tp), _stats(modes, eff), _stats(modes, enq)
        ceiling = _floor(data, backend).get("throughput")
        of = (f"{t['native'].median / ceiling * 100:.1f} %" if t["native"] and ceiling else "—")
        rows.append([[backend], [config, f" ({_pool(modes)})"], [_stat(t["native"])], [_stat(t["facade"])],
                     [_ratio(t["facade"], t["native"])], [of],
                     [f"{_pct(e['native'])} / {_pct(e['facade'])}"],
                     [f"{_stat(q['native'])} / {_stat(q['facade'])}"], [_flags(modes)]])
    return rows


def _pct(s: Stat | None) -> str:
    return "—" if s is None else f"{s.median * 100:.1f} %"


def _med(s: Stat | None) -> str:
    return "—" if s is None else C.fmt(s.median)


def latency_rows(data: RunData, scenario: str) -> Row:
    rows: Row = []
    pct = {k: path_getter(f"latency_ms.{k}") for k in ("p50", "p95", "p99")}
    parts = [path_getter(f"latency_ms.{k}.p50") for k in ("enqueue_to_start", "end_to_result")]
    for backend, config, modes in _pairs(data, scenario):
        p50 = _stats(modes, pct["p50"])
        cells: Row = [[backend], [config]]
        for m in MODES:
            if p50[m] is None:
                cells.append(["—"])
                continue
            g = modes[m]
            cells.append([f"{_stat(p50[m])}; p95 {_med(g.stat(pct['p95']))}, p99 {_med(g.stat(pct['p99']))}; "
                          f"start {_med(g.stat(parts[0]))} + result {_med(g.stat(parts[1]))}"])
        floor = _floor(data, backend).get("latency_p50_ms")
        cells += [[_ratio(p50["facade"], p50["native"])],
                  [f"×{p50['native'].median / floor:.1f}" if p50["native"] and floor else "—"], [_flags(modes)]]
        rows.append(cells)
    return rows


def resource_rows(data: RunData) -> Row:
    rows: Row = []
    getters = {"cpu": path_getter("cpu_s_per_1k"), "rss": path_getter("rss_mb"), "core": path_getter("per_core"),
               "mb": path_getter("per_mb")}

    def per_1k(part: str) -> Callable[[dict[str, Any]], Any]:
        def get(rec: dict[str, Any]) -> Any:
            cpu = ((rec.get("resources") or {}).get(part) or {}).get("cpu_s")
            done = rec.get("completed")
            return cpu / done * 1000 if isinstance(cpu, (int, float)) and done else None
        return get

    for backend, config, modes in _pairs(data, "throughput-noop"):
        for m in MODES:
            g = modes.get(m)
            if g is None:
                continue
            broker = "redis" if backend.endswith("+redis") else ("rabbitmq" if backend.endswith("+amqp") else "")
            rows.append([[backend], [config], [m], [_stat(g.stat(getters["cpu"]))], [_stat(g.stat(getters["rss"]))],
                         [_stat(g.stat(per_1k("producer")))],
                         [_stat(g.stat(per_1k(broker))) if broker else "—"],
                         [_stat(g.stat(getters["core"]))], [_stat(g.stat(getters["mb"]))]])
    return rows


def scale_rows(data: RunData) -> tuple[list[int], Row]:
    series = sorted({g.workers for g in data.where(scenario="scale")})
    rows: Row = []
    tp = path_getter("throughput")
    keys = sorted({(g.backend, g.config, g.mode) for g in data.where(scenario="scale")})
    for backend, config, mode in keys:
        gs = {g.workers: g for g in data.scale_groups(backend, config, mode)}
        st = {w: (gs[w].stat(tp) if w in gs else None) for w in series}
        first, last = st.get(series[0]), st.get(series[-1])
        rows.append([[backend], [config], [mode], *[[_stat(st[w])] for w in series], [_ratio(last, first)]])
    return series, rows


def blocks(data: RunData, methodology_href: str) -> list[Any]:
    """The "Measured results" section: a headline table, then one table per scenario (collapsed)."""
    from .document import Details, Heading, Link, Para, Table

    head = headline_rows(data)
    drains = [(sc, drain_rows(data, sc)) for sc in DRAINS]
    lats = [(sc, latency_rows(data, sc)) for sc in LATENCIES]
    res = resource_rows(data)
    series, scale = scale_rows(data)
    if not (head or any(r for _, r in drains + lats) or res or scale):
        return []
    out: list[Any] = [Heading(2, "Measured results", "results"), Para([
        "The figures behind the charts. Each cell: median over the repeats, with [min–max] when there is more than "
        "one; native = the library's own API and worker, facade = the same work through anytask; ×ratio = facade / "
        "native. Drain = tasks/s from the first start to the last end of a pre-enqueued batch; latency = ms from "
        "submit to the result seen by the client, split into submit→start and end→result seen. ",
        Link("How each figure is measured", methodology_href), "."])]
    if head:
        out.append(Table(["backend", "config", "noop drain native (tasks/s)", "facade", "facade / native",
                          "sporadic p50 native (ms)", "facade", "facade / native"], head, "results"))
    for sc, rows in drains:
        if rows:
            out.append(Details(f"{sc}: drain rate, {len(rows)} rows", [Table(
                ["backend", "config", "native tasks/s", "facade tasks/s", "facade / native", "native, % of raw broker",
                 "efficiency native / facade", "enqueue tasks/s native / facade", "flags"], rows, "results")]))
    for sc, rows in lats:
        if rows:
            out.append(Details(f"{sc}: latency in ms, {len(rows)} rows", [Table(
                ["backend", "config", "native p50", "facade p50", "facade / native", "native p50 / raw broker p50",
                 "flags"], rows, "results")]))
    if res:
        out.append(Details(f"Resources during the noop drain, {len(res)} rows", [Table(
            ["backend", "config", "mode", "worker CPU s / 1k tasks", "worker RSS peak (MB)",
             "producer CPU s / 1k", "broker CPU s / 1k", "tasks/s per core", "tasks/s per MB"], res, "results")]))
    if scale:
        out.append(Details(f"Scale-out: drain rate by worker processes, {len(scale)} rows", [Table(
            ["backend", "config", "mode", *[f"×{w} (tasks/s)" for w in series], f"×{series[-1]} / ×{series[0]}"],
            scale, "results")]))
    return out


__all__ = ["blocks", "DRAINS", "LATENCIES", "drain_rows", "headline_rows", "latency_rows", "resource_rows", "scale_rows"]
