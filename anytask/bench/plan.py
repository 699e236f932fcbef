"""``anytask bench run --dry-run``: the sessions and measurements a run would take, and its time.

The estimate is computed from the scenario parameters (N, caps, gaps, rates) and per-backend
rates. Rates come from calibration runs (``--calibration run.json``, repeatable; default: the
committed ``results/reference/run.json``): for each (scenario, backend, configuration, mode) the
measured enqueue rate, drain rate, p50 latency and the session's boot/stop/cleanup seconds
(``session_phases``) — falling back to the same cell's ``throughput-noop`` figures, then to the
generic figures in :data:`DEFAULTS`. Caps are applied as the run applies them, so the estimate
of a slow backend is bounded like its measurement. The upper bound assumes every capped phase
runs to its cap. The scenarios with workers of their own (reliability, soak) take the seconds a
calibration run measured for the same (scenario, backend, configuration); a soak cell none measured
is estimated at its ``max_s`` cap, and the plan says so.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .scenarios import OWN_SESSION_KINDS, Scenario, own_configs

# Generic figures for a cell no calibration run measured (tasks/s, ms, s); the session phases are
# about the medians of a quick run on the 2-core project machine (boot 0.2-1.9 s, Celery slowest).
DEFAULTS = {"enqueue_rate": 800.0, "throughput": 600.0, "p50_ms": 10.0, "boot_s": 1.0, "stop_s": 0.25,
            "cleanup_s": 0.1}
FIXED_THROUGHPUT_S = 0.6  # gates, result check, raw file per throughput measurement
FIXED_LATENCY_S = 0.3  # warm-up (5 round trips) and collection, on top of the samples
RUN_FIXED_S = {"quick": 8.0, "full": 15.0}  # environment, instrumentation A/B, cpu calibration, ceilings


@dataclass(frozen=True)
class Estimate:
    seconds: float
    upper: float  # every capped phase at its cap


@dataclass
class Calibration:
    cells: dict[tuple[str, str, str, str], dict[str, float]]
    sessions: dict[tuple[str, str, str], dict[str, float]]
    sources: list[str]
    # own-session scenarios (reliability, soak): measured seconds per (scenario, backend, config)
    own: dict[tuple[str, str, str], float] = field(default_factory=dict)

    def cell(self, scenario: str, backend: str, config: str, mode: str) -> dict[str, float]:
        got = self.cells.get((scenario, backend, config, mode))
        if got is None and not scenario.startswith("throughput-noop"):
            got = self.cells.get(("throughput-noop", backend, config, mode))
        return {**DEFAULTS, **(got or {})}

    def session(self, backend: str, config: str, mode: str) -> dict[str, float]:
        return {**DEFAULTS, **self.sessions.get((backend, config, mode), {})}


def default_calibration() -> list[str]:
    here = os.path.join(os.path.dirname(__file__), "..", "..", "results", "reference", "run.json")
    return [os.path.normpath(here)] if os.path.exists(here) else []


def load_calibration(paths: Iterable[str]) -> Calibration:
    """Median figures per cell over every record of the given run.json files."""
    acc: dict[tuple[str, str, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    sess: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    own: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    sources = []
    for path in paths:
        with open(path) as fh:
            doc = json.load(fh)
        sources.append(path)
        for r in doc.get("results", []):
            if r.get("error"):
                continue
            key = (r["scenario"], r["backend"], r["config"], r["mode"])
            if r["scenario"] == "scale":
                key = (f"scale-x{r.get('workers', 1)}", *key[1:])
            if r.get("throughput"):
                acc[key]["throughput"].append(r["throughput"])
            if r.get("enqueue_rate"):
                acc[key]["enqueue_rate"].append(r["enqueue_rate"])
            if (r.get("latency_ms") or {}).get("p50") is not None:
                acc[key]["p50_ms"].append(r["latency_ms"]["p50"])
        for label, secs in (doc.get("session_seconds") or {}).items():
            parts = label.split(" ")
            if len(parts) == 4 and not parts[0][1:].isdigit():  # "reliability-kill rq+redis reliable facade"
                own[(parts[0], parts[1], parts[2])].append(secs)
        for label, ph in (doc.get("session_phases") or {}).items():
            _, backend, config, mode = label.split(" ")
            for k in ("boot", "stop", "cleanup"):
                if k in ph:
                    sess[(backend, config, mode)][f"{k}_s"].append(ph[k])
    return Calibration({k: {f: statistics.median(v) for f, v in d.items()} for k, d in acc.items()},
                       {k: {f: statistics.median(v) for f, v in d.items()} for k, d in sess.items()}, sources,
                       {k: statistics.median(v) for k, v in own.items()})


def scenario_seconds(sc: Scenario, cal: Calibration, backend: str, config: str, mode: str,
                     capacity: float | None = None, workers: int = 0) -> Estimate:
    """One measurement's harness time, from the scenario's parameters and the cell's rates."""
    name = f"scale-x{workers}" if sc.kind == "scale" else sc.name
    c = cal.cell(name, backend, config, mode)
    if sc.kind in ("throughput", "scale"):
        rate = c["throughput"]
        if sc.declared_work:  # io/cpu: bounded by slots / task time when not measured
            rate = min(rate, 2 / (sc.work_ms / 1000.0))
        drain = sc.n / rate
        enq = sc.n / c["enqueue_rate"]
        cap = sc.max_drain_s or float("inf")
        upper = enq + (cap if sc.max_drain_s else drain) + FIXED_THROUGHPUT_S
        return Estimate(enq + min(drain, cap) + FIXED_THROUGHPUT_S + (1.0 if drain > cap else 0.0), upper)
    if sc.kind == "latency-sporadic":
        per = sc.gap_ms / 1000.0 + c["p50_ms"] * 1.3 / 1000.0  # the mean sits above the median
        t = sc.n * per
        cap = sc.max_wall_s or float("inf")
        return Estimate(min(t, cap) + FIXED_LATENCY_S, (cap if sc.max_wall_s else t) + FIXED_LATENCY_S)
    if sc.kind == "latency-steady":
        rate = (capacity or c["throughput"]) * sc.load or sc.fallback_rate
        t = sc.n / rate
        cap = sc.max_wall_s or float("inf")
        return Estimate(min(t, cap) + FIXED_LATENCY_S, (cap if sc.max_wall_s else t) + FIXED_LATENCY_S)
    return Estimate(0.0, 0.0)  # kinds run outside the sessions (reliability, soak) estimate themselves


def plan(order: list[tuple[int, Any, str, str]], scenarios: tuple[Scenario, ...], cal: Calibration,
         profile: str) -> dict[str, Any]:
    """Per session: its scenarios and estimated seconds; totals."""
    sessions: list[dict[str, Any]] = []
    total = upper = RUN_FIXED_S.get(profile, 10.0)
    own_sc = [s for s in scenarios if s.kind in OWN_SESSION_KINDS]
    scenarios = tuple(s for s in scenarios if s.kind not in OWN_SESSION_KINDS)
    targets = list(dict.fromkeys(t.id for _, t, _, _ in order))
    own = own_cells(own_sc, targets, cal)
    own_s = sum(c.seconds for c in own)
    total += own_s
    upper += sum(c.upper for c in own)
    for rep, target, cfg, mode in order:
        here = [s for s in scenarios if s.runs_in(cfg, mode, rep)]
        if not here:
            continue
        s_cal = cal.session(target.id, cfg, mode)
        in_process = target.id == "memory"
        if in_process and mode == "native":
            sessions.append({"session": f"r{rep} {target.id} {cfg} {mode}", "scenarios": [], "seconds": 0.0,
                             "note": "not applicable (memory has no native library)"})
            continue
        overhead = 0.0 if in_process else s_cal["boot_s"] + s_cal["stop_s"] + s_cal["cleanup_s"]
        est = up = overhead
        names = []
        cap_noop = cal.cell("throughput-noop", target.id, cfg, mode)["throughput"]
        for sc in here:
            if sc.kind == "scale":
                if in_process:
                    continue
                for w in sc.workers:
                    e = scenario_seconds(sc, cal, target.id, cfg, mode, workers=w)
                    est, up = est + e.seconds, up + e.upper
                    names.append(f"{sc.name}-x{w}")
                boot = s_cal["boot_s"] + s_cal["stop_s"]  # one boot for the series, plus the regular stop
                est, up = est + boot, up + boot
                continue
            e = scenario_seconds(sc, cal, target.id, cfg, mode, capacity=cap_noop)
            est, up = est + e.seconds, up + e.upper
            names.append(sc.name)
        sessions.append({"session": f"r{rep} {target.id} {cfg} {mode}", "scenarios": names,
                         "seconds": round(est, 1), "upper_seconds": round(up, 1)})
        total += est
        upper += up
    return {"profile": profile, "sessions": sessions, "measurements": sum(len(s["scenarios"]) for s in sessions),
            "estimate_s": round(total), "upper_s": round(upper), "calibration": cal.sources,
            "own_s": round(own_s), "own": [dataclasses.asdict(c) for c in own],
            "not_estimated": [c.session.rsplit(" ", 1)[0] for c in own if c.source == "not estimated"],
            "soak_caps": sorted({float(s.param("max_s", 600)) for s in own_sc if s.kind == "soak"})}  # type: ignore[arg-type]


# A soak cell no calibration run measured: the submit phase is cut at the scenario's max_s; after it
# the harness waits for the last ends (at most SOAK_DRAIN_WAIT_S without progress) and for the
# result TTL to expire (at most 2 x result_ttl + 15 s), anytask/bench/soak.py.
SOAK_DRAIN_WAIT_S = 30.0


@dataclass(frozen=True)
class OwnCell:
    session: str  # "soak rq+redis defaults facade", as run.json session_seconds labels it
    seconds: float
    upper: float
    source: str  # "calibrated", "cap" (soak at its max_s), "not applicable", "not estimated"


def own_cells(own: list[Scenario], targets: list[str], cal: Calibration) -> list[OwnCell]:
    """Each own-session cell (reliability, soak) with its estimate: the seconds a calibration run
    measured for the same (scenario, backend, configuration) (run.json ``session_seconds``); else a
    soak cell is estimated at its ``max_s`` cap (memory: not applicable, nothing runs); else none."""
    out = []
    for sc in own:
        for backend in targets:
            for cfg in own_configs(sc):
                label = f"{sc.name} {backend} {cfg} facade"
                got = cal.own.get((sc.name, backend, cfg))
                if got is not None:
                    out.append(OwnCell(label, got, got, "calibrated"))
                elif sc.kind == "soak" and backend == "memory":
                    out.append(OwnCell(label, 0.0, 0.0, "not applicable"))
                elif sc.kind == "soak":
                    cap = float(sc.param("max_s", 600))  # type: ignore[arg-type]
                    ttl = float(sc.param("result_ttl", 5))  # type: ignore[arg-type]
                    boot = DEFAULTS["boot_s"] + DEFAULTS["stop_s"] + DEFAULTS["cleanup_s"]
                    out.append(OwnCell(label, cap + boot, cap + boot + SOAK_DRAIN_WAIT_S + 2 * ttl + 15, "cap"))
                else:
                    out.append(OwnCell(label, 0.0, 0.0, "not estimated"))
    return out


def own_estimate(own: list[Scenario], targets: list[str], cal: Calibration) -> tuple[float, list[str]]:
    """Seconds of the own-session scenarios (reliability, soak) from the calibration runs' measured
    session seconds per (scenario, backend, configuration), soak cells without one at their cap; the
    cells with no estimate."""
    cells = own_cells(own, targets, cal)
    missing = [c.session.rsplit(" ", 1)[0] for c in cells if c.source == "not estimated"]
    return sum(c.seconds for c in cells), missing


def render(p: dict[str, Any], not_run: list[dict[str, Any]]) -> str:
    own = p.get("own") or []
    lines = [f"plan: profile {p['profile']}, {len(p['sessions'])} sessions, {p['measurements']} measurements"
             + (f", then {len(own)} reliability/soak measurements with workers of their own" if own else "")]
    for s in p["sessions"]:
        lines.append(f"  {s['session']:<42} {s['seconds']:>7.1f} s  {', '.join(s['scenarios']) or s.get('note', '')}")
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in own:
        per[c["session"].split(" ")[0]].append(c)
    for name, cells in per.items():
        srcs: dict[str, int] = defaultdict(int)
        for c in cells:
            srcs[c["source"]] += 1
        how = ", ".join(f"{k} {v}" for k, v in srcs.items())
        lines.append(f"  {'after the sessions: ' + name:<42} {sum(c['seconds'] for c in cells):>7.1f} s  "
                     f"{len(cells)} facade cells ({how})")
    for n in not_run:
        lines.append(f"  not run: {n['scenario']} outside configs={n['configs']} modes={n['modes']} "
                     f"repeats={n['repeats']} ({len(n['cells_not_run'])} cells): {n['why']}")
    lines.append(f"estimated {p['estimate_s'] / 60:.1f} min ({p['estimate_s']} s); upper bound with every cap "
                 f"reached {p['upper_s'] / 60:.1f} min")
    if p.get("own_s"):
        by: dict[str, float] = defaultdict(float)
        for c in own:
            by[c["source"]] += c["seconds"]
        parts = [f"{round(by[k])} s {k}" for k in ("calibrated", "cap") if by.get(k)]
        lines.append(f"  reliability/soak (after the sessions): {p['own_s']} s ({', '.join(parts)})")
    capped = [c for c in own if c["source"] == "cap"]
    if capped:
        caps = "/".join(f"{c:g}" for c in p.get("soak_caps") or [])
        lines.append(f"  soak: no calibration run measured {len(capped)} of its cells: each is estimated at the "
                     f"scenario's cap, max_s = {caps} s of submitting, plus a worker boot (upper bound: + "
                     f"{SOAK_DRAIN_WAIT_S:g} s waiting for the last ends + the result TTL wait); "
                     "'--calibration' with a soak run.json measures them")
    if p.get("not_estimated"):
        lines.append(f"not in the estimate (no calibration run measured them): {len(p['not_estimated'])} "
                     f"reliability/soak cells, e.g. {', '.join(p['not_estimated'][:3])}")
    lines.append("rates from: " + (", ".join(p["calibration"]) or "generic defaults (no calibration run)"))
    return "\n".join(lines)
