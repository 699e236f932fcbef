"""Scenarios are data: one TOML file per scenario in ``scenarios/`` (see docs/methodology.md).

A file names the measurement ``kind`` (``throughput``, ``latency-sporadic``, ``latency-steady``,
``scale``), the ``task`` (noop, io, cpu, payload), its parameters and the size per profile in
``[quick]`` / ``[full]`` tables. ``payload`` lists several ``sizes``: it expands into one scenario
per size (``payload-1KiB``, ``payload-64KiB``).

A profile table may also restrict where a scenario runs, so that the full profile fits its time
budget: ``configs`` / ``modes`` (the cells it runs in), ``repeats`` (how many of the run's repeats)
and ``why`` (the reason, copied into run.json's ``not_run``). Latency scenarios take
``max_wall_s``: sampling stops there and the record is flagged ``time-capped``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

KINDS = ("throughput", "latency-sporadic", "latency-steady", "scale", "reliability", "soak")
TASKS = ("noop", "io", "cpu", "payload")
# Kinds run outside the per-session loop, each with its own workers (anytask/bench/reliability.py,
# soak.py); their extra settings come from the file's [params] table and the profile table.
OWN_SESSION_KINDS = ("reliability", "soak")
_SIZED = ("n", "gap_ms", "workers", "max_drain_s", "max_wall_s", "gap_jitter", "configs", "modes", "repeats", "why")
ENV_DIR = "ANYTASK_BENCH_SCENARIOS"


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str
    task: str
    n: int
    description: str = ""
    work_ms: float = 0.0  # declared task time (io sleep, cpu hashing); 0 for noop/payload
    payload_bytes: int = 0
    gap_ms: float = 0.0  # latency-sporadic: idle gap before each task
    gap_jitter: float = 0.0  # latency-sporadic: each gap drawn uniformly from gap_ms x [1 - j, 1 + j]
    load: float = 0.5  # latency-steady: arrival rate as a fraction of measured noop capacity
    fallback_rate: float = 50.0  # latency-steady: tasks/s when no throughput-noop figure exists
    workers: tuple[int, ...] = ()  # scale: worker process counts
    max_drain_s: float = 0.0  # throughput: stop waiting after this long (0: no cap); flagged time-capped
    max_wall_s: float = 0.0  # latency: stop sampling after this long (0: no cap); flagged time-capped
    configs: tuple[str, ...] = ()  # configurations it runs in (empty: all)
    modes: tuple[str, ...] = ()  # modes it runs in (empty: all)
    repeats: int = 0  # runs only in repeats 1..repeats (0: all)
    why: str = ""  # why the cells above are restricted (run.json not_run)
    params: tuple[tuple[str, object], ...] = ()  # reliability/soak: [params] + the profile table's other keys

    def param(self, key: str, default: object = None) -> object:
        return dict(self.params).get(key, default)

    @property
    def declared_work(self) -> bool:
        return self.work_ms > 0

    def runs_in(self, config: str, mode: str, repeat: int) -> bool:
        """Whether this scenario is measured in the cell (configuration, mode, repeat)."""
        return ((not self.configs or config in self.configs) and (not self.modes or mode in self.modes)
                and (not self.repeats or repeat <= self.repeats))

    def restricted(self) -> bool:
        return bool(self.configs or self.modes or self.repeats)


@dataclass(frozen=True)
class Profile:
    name: str
    scenarios: tuple[str, ...]
    repeats: int
    configs: tuple[str, ...] = ("defaults", "tuned")
    modes: tuple[str, ...] = ("native", "facade")


PROFILES = {
    "quick": Profile("quick", ("throughput-noop", "latency-sporadic"), repeats=1),
    "full": Profile("full", ("throughput-noop", "throughput-io", "throughput-cpu", "payload",
                             "latency-sporadic", "latency-steady", "scale",
                             "reliability-kill", "reliability-restart", "soak"), repeats=3),
    # long: 100,000 tasks per backend (docs/methodology.md, "Soak"); facade, defaults only. The full
    # profile runs it too, after the sessions with the reliability scenarios (issue 7).
    "soak": Profile("soak", ("soak",), repeats=1, configs=("defaults",), modes=("facade",)),
}


def own_configs(sc: Scenario) -> tuple[str, ...]:
    """The configurations an own-session scenario (reliability, soak) runs in, always in facade mode:
    soak the library's ``defaults`` only (anytask/bench/soak.py ``CONFIG``), reliability the
    ``configs`` of its [params] (default defaults and reliable, as anytask/bench/reliability.py)."""
    if sc.kind == "soak":
        return ("defaults",)
    value = sc.param("configs", ("defaults", "reliable"))
    return tuple(str(v) for v in value) if isinstance(value, (tuple, list)) else (str(value),)


def own_only_cells(scs: list[Scenario] | tuple[Scenario, ...]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """When every scenario runs outside the sessions (``--profile full --scenarios soak``): the
    configurations and modes they run in, for the run's parameters (as the soak profile declares
    them); None when a regular scenario is among them (the profile's cells apply)."""
    if not scs or any(s.kind not in OWN_SESSION_KINDS for s in scs):
        return None
    configs = tuple(dict.fromkeys(c for s in scs for c in own_configs(s)))
    return configs, ("facade",)


def scenarios_dir() -> Path:
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "scenarios"


def _size_label(n: int) -> str:
    return f"{n // 1024}KiB" if n % 1024 == 0 else f"{n}B"


def parse(data: dict, profile: str, source: str = "") -> list[Scenario]:
    """The scenario(s) one TOML document describes, sized for ``profile``."""
    try:
        name, kind, task = data["name"], data["kind"], data["task"]
    except KeyError as exc:
        raise ValueError(f"{source}: missing key {exc}") from None
    if kind not in KINDS or task not in TASKS:
        raise ValueError(f"{source}: kind must be one of {KINDS} and task one of {TASKS}")
    sized = data.get(profile)
    if not isinstance(sized, dict) or "n" not in sized:
        raise ValueError(f"{source}: no [{profile}] table with n")
    common = {"name": name, "kind": kind, "task": task, "n": int(sized["n"]),
              "description": data.get("description", ""), "work_ms": float(data.get("work_ms", 0)),
              "gap_ms": float(sized.get("gap_ms", data.get("gap_ms", 0))), "load": float(data.get("load", 0.5)),
              "fallback_rate": float(data.get("fallback_rate", 50)),
              "workers": tuple(int(w) for w in sized.get("workers", data.get("workers", ()))),
              "max_drain_s": float(sized.get("max_drain_s", data.get("max_drain_s", 0))),
              "params": _params(data, sized), **_cells(sized, source, profile)}
    sizes = data.get("sizes")
    if task == "payload":
        if not sizes:
            raise ValueError(f"{source}: payload needs sizes = [bytes, ...]")
        return [Scenario(**{**common, "name": f"{name}-{_size_label(int(b))}"}, payload_bytes=int(b)) for b in sizes]
    return [Scenario(**common)]  # type: ignore[arg-type]


def _cells(sized: dict, source: str, profile: str) -> dict[str, object]:
    """The profile table's wall cap and cell restrictions (configs, modes, repeats, why)."""
    out: dict[str, object] = {"max_wall_s": float(sized.get("max_wall_s", 0)),
                              "gap_jitter": float(sized.get("gap_jitter", 0)),
                              "configs": tuple(str(c) for c in sized.get("configs", ())),
                              "modes": tuple(str(m) for m in sized.get("modes", ())),
                              "repeats": int(sized.get("repeats", 0)), "why": str(sized.get("why", ""))}
    bad = [m for m in out["modes"] if m not in ("native", "facade")]  # type: ignore[attr-defined]
    if bad:
        raise ValueError(f"{source}: [{profile}] modes must be native and/or facade, got {bad}")
    if (out["configs"] or out["modes"] or out["repeats"]) and not out["why"]:
        raise ValueError(f"{source}: [{profile}] restricts configs/modes/repeats: say why (why = \"...\")")
    return out


def _params(data: dict, sized: dict) -> tuple[tuple[str, object], ...]:
    merged = {**data.get("params", {}), **{k: v for k, v in sized.items() if k not in _SIZED}}
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in merged.items()))


def load(names: list[str] | tuple[str, ...], profile: str, directory: Path | None = None) -> list[Scenario]:
    """Load the named scenario files (``<dir>/<name>.toml``) for a profile, in the given order."""
    d = directory or scenarios_dir()
    out: list[Scenario] = []
    for name in names:
        path = d / f"{name}.toml"
        if not path.exists():
            known = sorted(p.stem for p in d.glob("*.toml"))
            raise ValueError(f"unknown scenario {name!r}; known: {', '.join(known)}")
        with open(path, "rb") as fh:
            out += parse(tomllib.load(fh), profile, str(path))
    return out
