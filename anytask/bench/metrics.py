"""Pure computations over merged stamps: windows, rates, percentiles, completeness, flags.

Nothing here touches a clock, a broker or a file, so the tests can feed it exact numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .stamps import TaskStamps

MISS_TOLERANCE = 0.20  # implied in-flight may miss the declared slots by this much before a flag
INSTRUMENTATION_LIMIT = 0.03  # stamping may cost at most 3 % of a noop task's time


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary_ms(values_s: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max in milliseconds of durations given in seconds."""
    ms = [v * 1000.0 for v in values_s]
    return {"p50": percentile(ms, 50), "p95": percentile(ms, 95), "p99": percentile(ms, 99),
            "max": max(ms) if ms else None}


@dataclass(frozen=True)
class Completeness:
    n: int
    completed: int  # bench ids with at least one end stamp
    lost: int  # enqueued, never ended
    duplicated: int  # ended more than once
    foreign: int  # ended but never enqueued in this measurement


def completeness(bids: Sequence[str], stamps: Mapping[str, TaskStamps]) -> Completeness:
    """Count completions per bench id from the worker end stamps."""
    wanted = set(bids)
    completed = lost = duplicated = 0
    for b in wanted:
        rec = stamps.get(b)
        ends = len(rec.ends) if rec else 0
        if ends == 0:
            lost += 1
        else:
            completed += 1
            if ends > 1:
                duplicated += 1
    foreign = sum(1 for b, r in stamps.items() if r.ends and b not in wanted)
    return Completeness(len(wanted), completed, lost, duplicated, foreign)


@dataclass(frozen=True)
class Window:
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 0.0)


def drain_window(bids: Iterable[str], stamps: Mapping[str, TaskStamps]) -> Window | None:
    """From the first start to the last end of the given tasks, read from their stamps."""
    starts = [s for b in bids if (r := stamps.get(b)) for s in r.starts]
    ends = [e for b in bids if (r := stamps.get(b)) for e in r.ends]
    if not starts or not ends:
        return None
    return Window(min(starts), max(ends))


def rate(count: int, seconds: float) -> float | None:
    return count / seconds if seconds > 0 else None


def mean_task_seconds(bids: Iterable[str], stamps: Mapping[str, TaskStamps]) -> float | None:
    """Mean execution time (first start to first end) of the completed tasks."""
    xs = [r.ends[0] - r.starts[0] for b in bids if (r := stamps.get(b)) and r.starts and r.ends]
    return sum(xs) / len(xs) if xs else None


@dataclass(frozen=True)
class Efficiency:
    ideal_s: float  # N * t / slots
    actual_s: float
    efficiency: float | None  # ideal / actual
    implied_in_flight: float | None  # throughput * t
    miss: float | None  # |in-flight - slots| / slots


def efficiency(n: int, task_s: float, slots: int, actual_s: float) -> Efficiency:
    ideal = n * task_s / slots if slots else 0.0
    eff = ideal / actual_s if actual_s > 0 else None
    tput = n / actual_s if actual_s > 0 else None
    in_flight = tput * task_s if tput is not None else None
    miss = abs(in_flight - slots) / slots if in_flight is not None and slots else None
    return Efficiency(ideal, actual_s, eff, in_flight, miss)


def flags(c: Completeness, eff: Efficiency | None, *, declared_work: bool,
          instrumentation_fraction: float | None = None, extra: Iterable[str] = ()) -> list[str]:
    """The flags of a record. A flagged record is kept and reported, never dropped.

    The concurrency check applies when the task has declared work (io, cpu): a noop's implied
    in-flight is near zero by construction, so there only over-subscription (more in flight than
    slots) is flagged.
    """
    out = list(extra)
    if c.lost:
        out.append(f"lost:{c.lost}")
    if c.duplicated:
        out.append(f"duplicated:{c.duplicated}")
    if c.foreign:
        out.append(f"foreign:{c.foreign}")
    if eff is not None and eff.implied_in_flight is not None and eff.miss is not None and eff.miss > MISS_TOLERANCE:
        over = eff.efficiency is not None and eff.efficiency > 1  # more in flight than slots
        if declared_work or over:
            out.append(f"concurrency-miss:{eff.implied_in_flight:.2f}-in-flight")
    if instrumentation_fraction is not None and instrumentation_fraction > INSTRUMENTATION_LIMIT:
        out.append(f"instrumentation:{instrumentation_fraction:.1%}")
    return out


def latency_parts(bids: Iterable[str], stamps: Mapping[str, TaskStamps]) -> dict[str, list[float]]:
    """Per task, in seconds: total (enqueue->result seen), queue (enqueue->start), run (start->end),
    and result (end->result seen). Tasks missing a stamp are left out."""
    out: dict[str, list[float]] = {"total": [], "enqueue_to_start": [], "run": [], "end_to_result": []}
    for b in bids:
        r = stamps.get(b)
        if not r or r.enqueue is None or not r.starts or not r.ends:
            continue
        out["enqueue_to_start"].append(r.starts[0] - r.enqueue)
        out["run"].append(r.ends[0] - r.starts[0])
        if r.seen is not None:
            out["total"].append(r.seen - r.enqueue)
            out["end_to_result"].append(r.seen - r.ends[0])
    return out


def latency_ms(parts: Mapping[str, list[float]]) -> dict[str, object]:
    total = summary_ms(parts["total"])
    return {**total,
            "enqueue_to_start": summary_ms(parts["enqueue_to_start"]),
            "end_to_result": summary_ms(parts["end_to_result"]),
            "run": summary_ms(parts["run"])}


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50)
