"""Result records, run.json and the raw per-task data (docs/run-json.md documents the schema)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..facade.url import mask
from .stamps import TaskStamps

SCHEMA_VERSION = 1
RECORD_KEYS = ("scenario", "backend", "config", "mode", "repeat", "n", "completed", "lost", "duplicated",
               "throughput", "enqueue_rate", "latency_ms", "rss_mb", "cpu_s_per_1k", "slots", "efficiency", "flags")
RUN_KEYS = ("schema", "environment", "configs", "ceilings", "results")


@dataclass(frozen=True)
class Record:
    """One measurement: a scenario on a backend, in one configuration and mode, one repeat."""

    scenario: str
    backend: str
    config: str
    mode: str
    repeat: int
    n: int
    completed: int = 0
    lost: int = 0
    duplicated: int = 0
    unfinished: int = 0  # time-capped drains: tasks dropped unrun when the cap was reached
    throughput: float | None = None  # tasks/s drained (first start -> last end)
    enqueue_rate: float | None = None  # tasks/s enqueued by the producer
    overhead_ms: float | None = None  # 1000 / throughput
    latency_ms: dict[str, Any] | None = None  # p50/p95/p99/max + enqueue_to_start/end_to_result/run
    rss_mb: float | None = None  # peak RSS of the worker process tree
    cpu_s_per_1k: float | None = None  # worker-tree CPU seconds per 1000 tasks
    slots: int = 0
    workers: int = 1  # worker processes started
    pool: str = ""
    ideal_s: float | None = None  # N * t / slots
    drain_s: float | None = None
    enqueue_s: float | None = None
    efficiency: float | None = None  # ideal_s / drain_s
    implied_in_flight: float | None = None  # throughput * mean task time
    arrival_rate: float | None = None  # latency-steady: offered tasks/s
    per_core: float | None = None  # tasks/s per CPU-second of the worker tree per second
    per_mb: float | None = None  # tasks/s per MB of worker RSS
    of_floor: float | None = None  # this figure / the raw floor of its broker (filled from ceilings)
    resources: dict[str, Any] | None = None
    flags: tuple[str, ...] = ()
    error: str | None = None
    raw: str | None = None  # file with the per-task stamps, relative to run.json
    phase_s: dict[str, float] | None = None  # harness seconds per phase of this measurement (not a figure)
    # reliability-* and soak records (anytask/bench/reliability.py, soak.py; docs/run-json.md)
    at_least_once_held: bool | None = None  # reliability: every task completed at least once by the deadline
    details: dict[str, Any] | None = None  # reliability: fault, timings, redelivered; soak: RSS, Redis memory

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["flags"] = list(self.flags)
        return d

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.scenario, self.backend, self.config, self.mode)


def raw_name(rec: Record) -> str:
    safe = rec.backend.replace("+", "-")
    scale = f"__x{rec.workers}" if rec.workers != 1 or rec.scenario == "scale" else ""
    return f"raw/{rec.scenario}__{safe}__{rec.config}__{rec.mode}__r{rec.repeat}{scale}.jsonl.gz"


def write_raw(out_dir: str, name: str, bids: Iterable[str], stamps: Mapping[str, TaskStamps]) -> None:
    """One JSON line per task: bench id, enqueue, starts, ends, result-seen (monotonic seconds)."""
    path = os.path.join(out_dir, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with gzip.open(path, "wt") as fh:
        for b in bids:
            r = stamps.get(b) or TaskStamps()
            fh.write(json.dumps({"id": b, "enqueue": r.enqueue, "starts": r.starts, "ends": r.ends,
                                 "seen": r.seen}) + "\n")


def read_raw(path: str) -> list[dict[str, Any]]:
    with gzip.open(path, "rt") as fh:
        return [json.loads(line) for line in fh]


@dataclass
class Run:
    environment: dict[str, Any] = field(default_factory=dict)
    configs: dict[str, Any] = field(default_factory=dict)  # "<backend>/<config>/<mode>" -> declared setup
    ceilings: dict[str, Any] = field(default_factory=dict)
    results: list[Record] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # profile, order, seed, instrumentation, interrupted

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "environment": self.environment, "configs": self.configs,
                "ceilings": self.ceilings, "results": [r.to_dict() for r in self.results], **self.meta}

    def write(self, out_dir: str) -> str:
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "run.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(_masked(self.to_dict()), fh, indent=1, default=str)  # no password in a run.json
        os.replace(tmp, path)
        return path


def _masked(value: Any) -> Any:
    """``value`` with the password of every URL in its strings masked (worker command lines, broker URLs)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v) for v in value]
    return value


def validate(doc: Mapping[str, Any]) -> list[str]:
    """Problems with a run.json document (empty when it follows docs/run-json.md)."""
    problems = [f"missing top-level key {k!r}" for k in RUN_KEYS if k not in doc]
    for i, rec in enumerate(doc.get("results", [])):
        for k in RECORD_KEYS:
            if k not in rec:
                problems.append(f"results[{i}] lacks {k!r}")
        if rec.get("mode") not in ("native", "facade"):
            problems.append(f"results[{i}].mode is {rec.get('mode')!r}")
        if rec.get("config") not in ("defaults", "tuned", "reliable"):
            problems.append(f"results[{i}].config is {rec.get('config')!r}")
        lat = rec.get("latency_ms")
        if lat is not None:
            for k in ("p50", "p95", "p99", "max", "enqueue_to_start", "end_to_result"):
                if k not in lat:
                    problems.append(f"results[{i}].latency_ms lacks {k!r}")
    return problems
