"""Across repeats: median and min/max per (scenario, backend, config, mode, workers); the facade's
overhead as a ratio to native; each figure as a fraction of its broker's raw floor."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from .metrics import median
from .results import Record

METRICS = ("throughput", "enqueue_rate", "efficiency", "cpu_s_per_1k", "rss_mb")
LATENCY = ("p50", "p95", "p99", "max")


def _stats(xs: list[float]) -> dict[str, float] | None:
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"median": median(xs), "min": min(xs), "max": max(xs)}  # type: ignore[dict-item]


def broker_floor(ceilings: dict[str, Any], backend: str) -> dict[str, Any] | None:
    """The raw ceiling of a backend's broker in a run's ``ceilings`` (redis-py for Redis, pika for AMQP)."""
    transport = backend.split("+")[1] if "+" in backend else ""
    return (ceilings or {}).get({"redis": "redis-py", "amqp": "pika"}.get(transport, ""))


def of_floor(r: Record, ceilings: dict[str, Any] | None) -> float | None:
    """A record's figure as a fraction of its broker's raw floor: drain rate / raw drain rate, or
    raw round-trip p50 / the record's p50 (both 1.0 = as fast as the bare broker)."""
    floor = broker_floor(ceilings or {}, r.backend)
    if not floor or r.error:
        return None
    if r.throughput and floor.get("throughput"):
        return float(r.throughput / floor["throughput"])
    p50 = (r.latency_ms or {}).get("p50")
    if p50 and floor.get("latency_p50_ms"):
        return float(floor["latency_p50_ms"] / p50)
    return None


def aggregate(records: Iterable[Record], ceilings: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str, str, int], list[Record]] = defaultdict(list)
    for r in records:
        if r.error is None:
            groups[(r.scenario, r.backend, r.config, r.mode, r.workers)].append(r)
    rows: dict[tuple[str, str, str, str, int], dict[str, Any]] = {}
    for key, recs in groups.items():
        row: dict[str, Any] = {"scenario": key[0], "backend": key[1], "config": key[2], "mode": key[3],
                               "workers": key[4], "repeats": len(recs), "slots": recs[0].slots,
                               "pool": recs[0].pool, "completed": sum(r.completed for r in recs),
                               "lost": sum(r.lost for r in recs), "duplicated": sum(r.duplicated for r in recs),
                               "flags": sorted({f for r in recs for f in r.flags})}
        for m in METRICS:
            row[m] = _stats([getattr(r, m) for r in recs])
        lat = [r.latency_ms for r in recs if r.latency_ms]
        if lat:
            row["latency_ms"] = {k: _stats([x[k] for x in lat]) for k in LATENCY}
            for part in ("enqueue_to_start", "end_to_result"):
                row["latency_ms"][part] = {k: _stats([x[part][k] for x in lat]) for k in ("p50", "p99")}
        ideal = [r.ideal_s for r in recs if r.ideal_s is not None]
        row["ideal_s"] = median(ideal) if ideal else None
        floor = broker_floor(ceilings or {}, key[1])
        if floor:
            t = (row["throughput"] or {}).get("median")
            if t and floor.get("throughput"):
                row["of_floor_throughput"] = t / floor["throughput"]
            p50 = ((row.get("latency_ms") or {}).get("p50") or {}).get("median")
            if p50 and floor.get("latency_p50_ms"):
                row["of_floor_latency"] = floor["latency_p50_ms"] / p50
        rows[key] = row
    for key, row in rows.items():
        if row["mode"] != "facade":
            continue
        native = rows.get((key[0], key[1], key[2], "native", key[4]))
        if not native:
            continue
        ft, nt = (row["throughput"] or {}).get("median"), (native["throughput"] or {}).get("median")
        if ft and nt:
            row["facade_vs_native_throughput"] = ft / nt
        fl = ((row.get("latency_ms") or {}).get("p50") or {}).get("median")
        nl = ((native.get("latency_ms") or {}).get("p50") or {}).get("median")
        if fl and nl:
            row["facade_vs_native_latency_p50"] = fl / nl
    return sorted(rows.values(), key=lambda r: (r["scenario"], r["backend"], r["config"], r["workers"], r["mode"]))
