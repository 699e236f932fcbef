"""Apply the claims' rules to the measurements: one Verdict per claim, plus the summary figures.

Which record decides a claim is fixed by survey.toml: the claim's scenario and metric, the library's
backends (``[backends]``), native mode and the tuned configuration (``[selection]``), the median over
repeats. A library with several brokers is judged on its best one; every broker is listed as evidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import claims as C
from .data import Group, RunData, path_getter


@dataclass(frozen=True)
class Metric:
    name: str
    better: str  # "higher" or "lower"
    unit: str
    label: str


METRICS: dict[str, Metric] = {
    "throughput": Metric("throughput", "higher", " tasks/s per core", "drain throughput per core"),
    "throughput_max_workers": Metric("throughput_max_workers", "higher", " tasks/s per core",
                                     "best scale-out drain throughput per core"),
    "enqueue_to_start_p50": Metric("enqueue_to_start_p50", "lower", " ms", "p50 enqueue → start"),
    "latency_p50": Metric("latency_p50", "lower", " ms", "p50 enqueue → result seen"),
    "rss_mb": Metric("rss_mb", "lower", " MiB", "peak worker RSS"),
    "cpu_s_per_1k": Metric("cpu_s_per_1k", "lower", " CPU-s/1k tasks", "worker CPU per 1k tasks"),
    "broker_cpu_s_per_1k": Metric("broker_cpu_s_per_1k", "lower", " broker CPU-s/1k tasks",
                                  "broker CPU per 1k tasks (network I/O proxy)"),
    "scale_gain": Metric("scale_gain", "higher", "×", "scale-out gain (most workers / 1 worker)"),
}

_GETTERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "throughput": path_getter("throughput"),
    "enqueue_to_start_p50": path_getter("latency_ms.enqueue_to_start.p50"),
    "latency_p50": path_getter("latency_ms.p50"),
    "rss_mb": path_getter("rss_mb"),
    "cpu_s_per_1k": path_getter("cpu_s_per_1k"),
}


def broker_cpu_per_1k(rec: dict[str, Any]) -> float | None:
    """Broker CPU-seconds per 1000 completed tasks: the network I/O proxy (see survey.toml [metrics])."""
    backend = str(rec.get("backend", ""))
    transport = backend.split("+", 1)[1] if "+" in backend else ""
    completed = rec.get("completed") or 0
    if transport == "sqlite" or backend == "memory":
        return 0.0
    res = rec.get("resources") or {}
    parts = {"redis": ["redis"], "amqp": ["rabbitmq", "redis"]}.get(transport)
    if not parts or not completed:
        return None
    total = 0.0
    for p in parts:
        cpu = (res.get(p) or {}).get("cpu_s")
        if cpu is None:
            return None
        total += float(cpu)
    return total / completed * 1000


def cores(data: RunData, g: Group) -> int:
    """Cores the workers of a group could use: min(slots x workers, cpu_count) (scale: 1 slot per worker)."""
    per_worker = 1 if g.scenario == "scale" else max(g.slots, 1)
    return max(1, min(per_worker * max(g.workers, 1), data.cpu_count))


@dataclass(frozen=True)
class Measured:
    backend: str
    value: float
    groups: tuple[Group, ...]
    text: str  # evidence in words
    note: str = ""  # a fact the verdict's reason should repeat


def measure(data: RunData, claims: C.Claims, scenario: str, metric: str, backend: str) -> Measured | None:
    """The claim's statistic for one backend, from the selected (config, mode) group(s)."""
    mode = claims.selection.get("mode", "native")
    for config in claims.selection.get("configs", ["tuned"]):
        m = _measure(data, scenario, metric, backend, config, mode)
        if m is not None:
            return m
    return None


def _describe(g: Group, st: Any, unit: str) -> str:
    return (f"{g.backend} {g.config} {g.mode}, {g.scenario}"
            + (f" ×{g.workers} workers" if g.scenario == "scale" else "")
            + f": median {C.fmt(st.median)}{unit} (min {C.fmt(st.min)}, max {C.fmt(st.max)}; "
            f"{g.repeats} repeat{'s' if g.repeats != 1 else ''}, n={g.n}, {g.slots} slots, pool {g.records[0].get('pool') or '?'}"
            + (f"; flags {', '.join(g.flags)}" if g.flags else "") + ")")


def _measure(data: RunData, scenario: str, metric: str, backend: str, config: str, mode: str) -> Measured | None:
    if metric in ("throughput_max_workers", "scale_gain"):
        gs = [g for g in data.scale_groups(backend, config, mode) if g.stat(_GETTERS["throughput"])]
        if not gs:
            return None
        stats = {g.workers: g.stat(_GETTERS["throughput"]) for g in gs}
        curve = ", ".join(f"×{w}: {C.fmt(s.median)}/s" for w, s in sorted(stats.items()) if s)
        if metric == "scale_gain":
            if len(gs) < 2 or gs[0].workers != 1:
                return None
            lo, hi = stats[gs[0].workers], stats[gs[-1].workers]
            assert lo and hi
            v = hi.median / lo.median
            return Measured(backend, v, tuple(gs), f"{backend} {config} {mode}, scale: {curve} (n={gs[0].n}) → "
                                                   f"×{gs[-1].workers}/×1 = {C.fmt(v)}")
        best = max(gs, key=lambda g: stats[g.workers].median)  # type: ignore[union-attr]
        st = stats[best.workers]
        assert st
        c = cores(data, best)
        return Measured(backend, st.median / c, tuple(gs),
                        f"{backend} {config} {mode}, scale: {curve} (n={best.n}); best ×{best.workers} workers "
                        f"{C.fmt(st.median)}/s (min {C.fmt(st.min)}, max {C.fmt(st.max)}) on {c} of "
                        f"{data.cpu_count} cores → {C.fmt(st.median / c)}/s per core")
    g = data.group(scenario, backend, config, mode)
    if g is None:
        return None
    getter = broker_cpu_per_1k if metric == "broker_cpu_s_per_1k" else _GETTERS.get(metric)
    if getter is None:
        raise ValueError(f"unknown metric {metric!r}")
    st = g.stat(getter)
    if st is None:
        return None
    if metric == "throughput":
        c = cores(data, g)
        note = ""
        ideal = g.values(lambda r: r["ideal_s"] * r["slots"] / r["n"] if r.get("n") else None)
        if ideal and not g.scenario.endswith("noop") and min(ideal) > 0:
            t = sorted(ideal)[len(ideal) // 2]
            note = (f"the {g.scenario} task itself takes {C.fmt(t * 1000)} ms (run.json ideal_s), so one core "
                    f"cannot exceed {C.fmt(1 / t)} tasks/s")
        return Measured(backend, st.median / c, (g,), _describe(g, st, "/s") +
                        f" on {c} of {data.cpu_count} cores → {C.fmt(st.median / c)}/s per core", note)
    return Measured(backend, st.median, (g,), _describe(g, st, METRICS[metric].unit))


def library_best(data: RunData, claims: C.Claims, library: str, scenario: str, metric: str
                 ) -> tuple[Measured | None, list[Measured]]:
    """The library's best broker for the metric, and every broker measured."""
    found = [m for b in claims.backends.get(library, []) if (m := measure(data, claims, scenario, metric, b))]
    if not found:
        return None, []
    higher = METRICS[metric].better == "higher"
    best = max(found, key=lambda m: m.value) if higher else min(found, key=lambda m: m.value)
    return best, found


@dataclass
class Verdict:
    claim: C.Claim
    verdict: str
    reason: str
    measured: str = ""  # the decisive figure, short
    evidence: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (label, relative href)
    deviation: float = 0.0
    value: float | None = None


def _links(groups: tuple[Group, ...] | list[Group]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for g in groups:
        for idx, rec in zip(g.indices, g.records):
            label = f"results[{idx}]"
            out.append((label, rec.get("raw") or "run.json"))
    return out


def _comparability(claim: C.Claim, data: RunData) -> str:
    env = data.env
    hw = f"{env.get('cpu_count', '?')} cores, {env.get('cpu_model', '?')}"
    if claim.metric in ("throughput", "throughput_max_workers"):
        return f"compared per core: the survey gives no hardware, concurrency or broker (here: {hw})"
    if claim.kind == "latency" or claim.metric.endswith("p50"):
        return f"the survey gives no hardware or broker (here: {hw}, producer and workers on one host)"
    return ""


def evaluate(claims: C.Claims, data: RunData) -> list[Verdict]:
    rules = claims.rules
    out: list[Verdict] = []
    table_levels: dict[tuple[str, str], dict[str, str]] = {}
    for c in claims.claims:
        if c.rule == "rank":
            table_levels.setdefault((c.table, c.column), {})[c.library] = c.claimed
    value_cache: dict[tuple[str, str, str], tuple[Measured | None, list[Measured]]] = {}

    def best(lib: str, scenario: str, metric: str) -> tuple[Measured | None, list[Measured]]:
        key = (lib, scenario, metric)
        if key not in value_cache:
            value_cache[key] = library_best(data, claims, lib, scenario, metric)
        return value_cache[key]

    libs = list(claims.survey.get("libraries", []))
    for c in claims.claims:
        out.append(_evaluate_one(c, claims, data, rules, table_levels, best, libs))
    return out


def _evaluate_one(c: C.Claim, claims: C.Claims, data: RunData, rules: dict[str, Any],
                  table_levels: dict[tuple[str, str], dict[str, str]],
                  best: Callable[[str, str, str], tuple[Measured | None, list[Measured]]], libs: list[str]) -> Verdict:
    if c.rule == "untested":
        return Verdict(c, C.NOT_COMPARABLE, c.untested or "no scenario or probe tests this claim")
    if c.rule in ("feature", "probe"):
        return _evaluate_feature(c, claims, data, rules)
    if c.scenario not in data.scenarios:
        return Verdict(c, C.NOT_COMPARABLE, f"scenario {c.scenario} was not run (profile "
                                            f"{data.run.get('profile', '?')})")
    metric = METRICS[c.metric]
    note = _comparability(c, data)
    if c.rule == "numeric":
        b, allm = best(c.library, c.scenario, c.metric)
        if b is None:
            return Verdict(c, C.NOT_COMPARABLE, f"no {claims.selection.get('mode', 'native')} "
                                                f"{'/'.join(claims.selection.get('configs', ['tuned']))} measurement "
                                                f"of {c.scenario} for {c.library} in this run")
        d = C.decide_numeric(c.claimed, b.value, metric.better == "higher", float(rules["numeric"]["tolerance"]),
                             metric.unit)
        reason = d.reason + (f"; {note}" if note else "") + (f"; best of {len(allm)} brokers: {b.backend}"
                                                            if len(allm) > 1 else "") + (f"; {b.note}" if b.note else "")
        return Verdict(c, d.verdict, reason, f"{C.fmt(b.value)}{metric.unit} ({b.backend})",
                       [m.text for m in allm], _links([g for m in allm for g in m.groups]), d.deviation, b.value)
    if c.rule == "spread":
        _, allm = best(c.library, c.scenario, c.metric)
        d = C.decide_spread({m.backend: m.value for m in allm}, rules["spread"])
        return Verdict(c, d.verdict, d.reason, ", ".join(f"{m.backend} {C.fmt(m.value)}{metric.unit}" for m in allm),
                       [m.text for m in allm], _links([g for m in allm for g in m.groups]), d.deviation)
    # cross-library rules
    per_lib: dict[str, Measured] = {}
    for lib in libs:
        b, _ = best(lib, c.scenario, c.metric)
        if b is not None:
            per_lib[lib] = b
    values = {k: m.value for k, m in per_lib.items()}
    evidence = [f"{k}: {m.text}" for k, m in sorted(per_lib.items())]
    links = _links([g for m in per_lib.values() for g in m.groups])
    mine = per_lib.get(c.library)
    measured = f"{C.fmt(mine.value)}{metric.unit} ({mine.backend})" if mine else ""
    if c.rule == "rank":
        params = dict(rules["rank"])
        d = C.decide_rank(c.library, table_levels[(c.table, c.column)], values, params)
    elif c.rule == "lowest":
        d = C.decide_lowest(c.library, values, rules["lowest"])
    elif c.rule == "order":
        d = C.decide_order([x.strip() for x in c.claimed.split(",")], values, metric.better == "higher")
        measured = ", ".join(f"{k} {C.fmt(values[k])}{metric.unit}" for k in c.libraries if k in values)
    else:
        raise ValueError(f"{c.id}: unknown rule {c.rule}")
    reason = d.reason + (f"; {note}" if note else "")
    if c.metric == "broker_cpu_s_per_1k":
        reason += "; PROXY: broker CPU per task stands in for network I/O (no byte counts in run.json)"
    return Verdict(c, d.verdict, reason, measured, evidence, links, d.deviation, mine.value if mine else None)


def _evaluate_feature(c: C.Claim, claims: C.Claims, data: RunData, rules: dict[str, Any]) -> Verdict:
    f = data.features
    if not f:
        return Verdict(c, C.NOT_COMPARABLE, "no features.json next to run.json (run `anytask probe`)")
    if c.rule == "probe":
        for pc in f.get("claims") or []:
            if pc.get("id") == c.probe_claim:
                d = C.decide_probe(pc.get("holds"), str(pc.get("evidence", "")))
                probe = ((f.get("libraries") or {}).get(pc.get("library"), {}).get("side_probes") or {}).get(
                    pc.get("probe"), {})
                ev = [f"probe {pc.get('library')}.{pc.get('probe')}: holds={pc.get('holds')}, capability verdict "
                      f"{pc.get('verdict')}" + (f"; version {probe.get('version')}" if probe.get("version") else "")
                      + (f"; api {probe.get('api')}" if probe.get("api") else "")]
                return Verdict(c, d.verdict, d.reason, f"holds = {pc.get('holds')}", ev,
                               [(f"features.json claims[{c.probe_claim}]", "features.json")], d.deviation)
        return Verdict(c, C.NOT_COMPARABLE, f"features.json has no claim {c.probe_claim!r}")
    lib = (f.get("libraries") or {}).get(c.library) or {}
    feats = lib.get("features") or {}
    got: dict[str, str] = {}
    evidence = []
    for feat in c.features:
        r = feats.get(feat)
        if r is None:
            continue
        got[feat] = str(r.get("verdict"))
        evidence.append(f"{feat}: {r.get('verdict')} — {r.get('observed', '')}"
                        + (f" (missing: {r['missing']})" if r.get("missing") else "")
                        + (f" (plugin: {r['plugin']})" if r.get("plugin") else "")
                        + (f" [api: {r.get('api')}; {r.get('version')}]" if r.get("api") else ""))
    words = ((f.get("survey") or {}).get("configuration_words")) or None
    d = C.decide_feature(c.claimed, got, rules["feature"], words)
    if len(got) < len(c.features) and d.verdict != C.NOT_COMPARABLE:
        missing = [x for x in c.features if x not in got]
        d = C.Decision(C.NOT_COMPARABLE, d.reason + f"; probe(s) missing from features.json: {', '.join(missing)}")
    return Verdict(c, d.verdict, d.reason, ", ".join(f"{k}: {v}" for k, v in sorted(got.items())), evidence,
                   [(f"features.json {c.library}.{x}", "features.json") for x in c.features], d.deviation)


# --------------------------------------------------------------------------------- summary figures
def counts(verdicts: list[Verdict]) -> dict[str, dict[str, int]]:
    """verdict counts per claim kind, plus 'all'."""
    out: dict[str, dict[str, int]] = {}
    for v in verdicts:
        for k in (v.claim.kind, "all"):
            out.setdefault(k, {x: 0 for x in C.VERDICTS})[v.verdict] += 1
    return out


def surprises(verdicts: list[Verdict], k: int = 6) -> list[Verdict]:
    """The claims furthest from what the survey says: first the worst one of each kind (throughput, latency,
    resource, feature, side), then the next worst overall; refuted before partly, then by deviation."""
    pool = [v for v in verdicts if v.verdict in (C.REFUTED, C.PARTLY)]
    pool.sort(key=lambda v: (v.verdict != C.REFUTED, -(v.deviation if math.isfinite(v.deviation) else 1e9),
                             v.claim.id))
    out: list[Verdict] = []
    for kind in C.KINDS:
        first = next((v for v in pool if v.claim.kind == kind), None)
        if first is not None:
            out.append(first)
    out += [v for v in pool if v not in out][: max(0, k - len(out))]
    out.sort(key=lambda v: pool.index(v))
    return out[:k]


@dataclass(frozen=True)
class Ranked:
    backend: str
    mode: str
    config: str
    value: float
    unit: str


def rankings(data: RunData) -> dict[str, list[Ranked]]:
    """Per scenario: backends in order (throughput: highest median first; latency: lowest p50 first),
    for the tuned configuration (defaults where tuned was not run), both modes."""
    out: dict[str, list[Ranked]] = {}
    for scenario in data.scenarios:
        if scenario.startswith("reliability-") or scenario == "soak":
            continue  # counts of lost/duplicated tasks, not a speed: their own tables rank nothing
        rows: list[Ranked] = []
        for g in data.where(scenario=scenario):
            if scenario == "scale" and g.workers != max(x.workers for x in data.scale_groups(g.backend, g.config,
                                                                                             g.mode)):
                continue
            has_tuned = data.group(scenario, g.backend, "tuned", g.mode) is not None
            if g.config != ("tuned" if has_tuned else "defaults"):
                continue
            if scenario.startswith("latency"):
                st = g.stat(_GETTERS["latency_p50"])
                if st:
                    rows.append(Ranked(g.backend, g.mode, g.config, st.median, "ms p50"))
            else:
                st = g.stat(_GETTERS["throughput"])
                if st:
                    rows.append(Ranked(g.backend, g.mode, g.config, st.median,
                                       "tasks/s" + (f" at ×{g.workers} workers" if scenario == "scale" else "")))
        lower = scenario.startswith("latency")
        rows.sort(key=lambda r: (r.value if lower else -r.value, r.backend, r.mode))
        out[scenario] = rows
    return out
