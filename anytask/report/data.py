"""Reading run.json and features.json, and the per-group statistics the report uses.

Every number in the report comes from here: groups of ``results[]`` records with the same (scenario,
backend, config, mode, workers), their median / min / max over repeats, and the record indices and raw
files behind each group so that a verdict can link to them.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

GroupKey = tuple[str, str, str, str, int]  # scenario, backend, config, mode, workers


@dataclass
class Group:
    """The records of one (scenario, backend, config, mode, workers) over repeats (errors excluded)."""

    key: GroupKey
    records: list[dict[str, Any]] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)  # positions in run.json results[]

    @property
    def scenario(self) -> str:
        return self.key[0]

    @property
    def backend(self) -> str:
        return self.key[1]

    @property
    def config(self) -> str:
        return self.key[2]

    @property
    def mode(self) -> str:
        return self.key[3]

    @property
    def workers(self) -> int:
        return self.key[4]

    @property
    def n(self) -> int:
        return int(self.records[0].get("n") or 0) if self.records else 0

    @property
    def repeats(self) -> int:
        return len(self.records)

    @property
    def slots(self) -> int:
        return int(self.records[0].get("slots") or 0) if self.records else 0

    @property
    def raw(self) -> list[str]:
        return [r["raw"] for r in self.records if r.get("raw")]

    @property
    def flags(self) -> list[str]:
        return sorted({f for r in self.records for f in r.get("flags") or ()})

    def values(self, getter: Callable[[dict[str, Any]], Any]) -> list[float]:
        out = []
        for r in self.records:
            try:
                v = getter(r)
            except (KeyError, TypeError):
                v = None
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append(float(v))
        return out

    def stat(self, getter: Callable[[dict[str, Any]], Any]) -> Stat | None:
        return Stat.of(self.values(getter))


@dataclass(frozen=True)
class Stat:
    median: float
    min: float
    max: float
    n: int

    @staticmethod
    def of(xs: list[float]) -> Stat | None:
        if not xs:
            return None
        return Stat(statistics.median(xs), min(xs), max(xs), len(xs))


def path_getter(path: str) -> Callable[[dict[str, Any]], Any]:
    """``"latency_ms.enqueue_to_start.p50"`` -> a function reading that value from a record."""
    parts = path.split(".")

    def get(rec: dict[str, Any]) -> Any:
        v: Any = rec
        for p in parts:
            v = v[p]
        return v

    return get


@dataclass
class RunData:
    """run.json (and features.json when present) of one report directory."""

    directory: str
    run: dict[str, Any]
    features: dict[str, Any] | None = None
    groups: dict[GroupKey, Group] = field(default_factory=dict)
    errors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, Any]:
        return self.run.get("environment") or {}

    @property
    def cpu_count(self) -> int:
        return int(self.env.get("cpu_count") or 1)

    @property
    def scenarios(self) -> list[str]:
        return sorted({k[0] for k in self.groups})

    @property
    def backends(self) -> list[str]:
        return sorted({k[1] for k in self.groups})

    @property
    def merged(self) -> list[dict[str, Any]]:
        """Provenance of records merged from other runs (``anytask bench merge``; run.json ``merged``)."""
        return [e for e in self.run.get("merged") or [] if isinstance(e, dict)]

    @property
    def not_run(self) -> list[dict[str, Any]]:
        """The cells the profile leaves out by design, per scenario, with the reason (run.json ``not_run``)."""
        return [n for n in self.run.get("not_run") or [] if isinstance(n, dict)]

    def session_timers(self) -> list[tuple[str, float | None, dict[str, float]]]:
        """(session label, wall seconds, seconds per phase) of every session run.json times, in run order
        (``order`` first, then the sessions with workers of their own: reliability, soak)."""
        secs = self.run.get("session_seconds") or {}
        phases = self.run.get("session_phases") or {}
        labels = [x for x in self.run.get("order") or [] if x in secs or x in phases]
        labels += [x for x in list(secs) + list(phases) if x not in labels]
        out = []
        for label in dict.fromkeys(labels):
            v = secs.get(label)
            ph = phases.get(label) or {}
            out.append((label, float(v) if isinstance(v, (int, float)) else None,
                        {k: float(x) for k, x in ph.items() if isinstance(x, (int, float))}))
        return out

    def phase_totals(self) -> list[tuple[str, float, int]]:
        """(phase, seconds summed over sessions, sessions) from ``session_phases``: the harness's own
        phases (isolate, boot, stop, cleanup) first, then one per scenario, by name."""
        tot: dict[str, float] = defaultdict(float)
        cnt: dict[str, int] = defaultdict(int)
        for _, _, ph in self.session_timers():
            for k, v in ph.items():
                tot[k] += v
                cnt[k] += 1
        first = [k for k in ("isolate", "boot", "stop", "cleanup") if k in tot]
        return [(k, tot[k], cnt[k]) for k in first + sorted(k for k in tot if k not in first)]

    def record_phases(self) -> list[tuple[str, int, dict[str, float]]]:
        """(scenario, records, seconds per phase summed over its records) from the records' ``phase_s``."""
        tot: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        cnt: dict[str, int] = defaultdict(int)
        for r in self.run.get("results") or []:
            ph = r.get("phase_s")
            if not isinstance(ph, dict) or not ph:
                continue
            sc = str(r.get("scenario"))
            cnt[sc] += 1
            for k, v in ph.items():
                if isinstance(v, (int, float)):
                    tot[sc][k] += float(v)
        return [(sc, cnt[sc], dict(tot[sc])) for sc in sorted(tot)]

    def group(self, scenario: str, backend: str, config: str, mode: str, workers: int | None = None) -> Group | None:
        if workers is not None:
            return self.groups.get((scenario, backend, config, mode, workers))
        found = [g for k, g in self.groups.items() if k[:4] == (scenario, backend, config, mode)]
        if not found:
            return None
        return min(found, key=lambda g: g.workers)

    def scale_groups(self, backend: str, config: str, mode: str) -> list[Group]:
        return sorted((g for k, g in self.groups.items() if k[0] == "scale" and k[1:4] == (backend, config, mode)),
                      key=lambda g: g.workers)

    def select(self, pred: Callable[[Group], bool]) -> list[Group]:
        return [g for _, g in sorted(self.groups.items()) if pred(g)]

    def where(self, **match: Any) -> list[Group]:
        """Groups whose attributes (scenario, backend, config, mode, workers) equal the given values, sorted."""
        return [g for _, g in sorted(self.groups.items()) if all(getattr(g, k) == v for k, v in match.items())]


def build_groups(results: Iterable[Mapping[str, Any]]) -> tuple[dict[GroupKey, Group], list[tuple[int, dict[str, Any]]]]:
    groups: dict[GroupKey, Group] = {}
    errors: list[tuple[int, dict[str, Any]]] = []
    by_key: dict[GroupKey, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for i, rec in enumerate(results):
        rec = dict(rec)
        if rec.get("error"):
            errors.append((i, rec))
            continue
        key = (str(rec.get("scenario")), str(rec.get("backend")), str(rec.get("config")), str(rec.get("mode")),
               int(rec.get("workers") or 1))
        by_key[key].append((i, rec))
    for key, items in by_key.items():
        items.sort(key=lambda t: (t[1].get("repeat") or 0, t[0]))
        groups[key] = Group(key, [r for _, r in items], [i for i, _ in items])
    return groups, errors


def load(directory: str, features_path: str | None = None) -> RunData:
    """Read ``DIR/run.json`` (required) and ``features.json`` (``features_path``, else ``DIR/features.json``)."""
    path = os.path.join(directory, "run.json")
    with open(path) as fh:
        run = json.load(fh)
    fpath = features_path or os.path.join(directory, "features.json")
    features = None
    if os.path.exists(fpath):
        with open(fpath) as fh:
            features = json.load(fh)
    groups, errors = build_groups(run.get("results") or [])
    return RunData(directory=directory, run=run, features=features, groups=groups, errors=errors)


def from_documents(run: dict[str, Any], features: dict[str, Any] | None = None, directory: str = ".") -> RunData:
    """The same from in-memory documents (tests)."""
    groups, errors = build_groups(run.get("results") or [])
    return RunData(directory=directory, run=run, features=features, groups=groups, errors=errors)
