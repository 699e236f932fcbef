"""A whole run: sessions over backends x configurations x modes x repeats, in random order.

Each session starts its workers once (outside every measured window), runs the scenarios, stops
the workers and purges. The run document is rewritten after every session, so Ctrl-C keeps what
was measured.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from . import results, runner, stamps
from .driver import READY_TIMEOUT, Driver, FacadeDriver, Setup
from .results import Record, Run
from .scenarios import OWN_SESSION_KINDS, Scenario
from .stamps import StampReader
from .targets import Isolation, Target


@dataclass(frozen=True)
class Options:
    profile: str
    targets: tuple[Target, ...]
    scenarios: tuple[Scenario, ...]
    repeats: int
    out_dir: str
    configs: tuple[str, ...] = ("defaults", "tuned")
    modes: tuple[str, ...] = ("native", "facade")
    slots: int = 2
    seed: int = field(default_factory=lambda: random.SystemRandom().randrange(2**31))
    ceilings: bool = True
    resources: bool = True
    fallback: bool = False  # no broker answered: memory and huey+sqlite only


class Display(Protocol):
    def begin(self, total: int) -> None: ...
    def measurement(self, label: str, total: int) -> None: ...
    def progress(self, done: int, total: int) -> None: ...
    def done(self, record: Record) -> None: ...
    def note(self, text: str) -> None: ...
    def end(self) -> None: ...


class QuietDisplay:
    def begin(self, total: int) -> None: ...
    def measurement(self, label: str, total: int) -> None: ...
    def progress(self, done: int, total: int) -> None: ...
    def done(self, record: Record) -> None: ...
    def note(self, text: str) -> None: ...
    def end(self) -> None: ...


class Unsupported(Exception):
    """This backend has no such mode (memory has no native library)."""


def make_driver(mode: str, setup: Setup) -> Driver:
    if mode == "facade":
        return FacadeDriver(setup)
    if setup.target.id == "memory":
        raise Unsupported("memory:// is anytask's own in-process backend: it has no native library")
    from .native import driver_for

    return driver_for(setup)


def flush_redis(iso: Isolation) -> None:
    """Empty the dedicated bench database (isolation: before and after every session)."""
    import redis

    client = redis.Redis.from_url(iso.redis_url, socket_connect_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()


def session_order(targets: list[Target], configs: tuple[str, ...], modes: tuple[str, ...], repeats: int,
                  seed: int) -> list[tuple[int, Target, str, str]]:
    """Every (repeat, backend, configuration, mode), backends in a fresh random order per repeat."""
    rng = random.Random(seed)
    out = []
    for rep in range(1, repeats + 1):
        order = rng.sample(targets, len(targets))
        for t in order:
            for cfg in configs:
                for mode in rng.sample(list(modes), len(modes)):
                    out.append((rep, t, cfg, mode))
    return out


def _count(scenarios: tuple[Scenario, ...]) -> int:
    return sum(len(s.workers) if s.kind == "scale" else 1 for s in scenarios)


class RunState:
    def __init__(self, opts: Options, display: Display) -> None:
        self.opts = opts
        self.display = display
        self.run = Run()
        self.run_id = uuid.uuid4().hex[:8]
        self.work = os.path.join(opts.out_dir, "work")
        self.iso = Isolation(self.run_id, workdir=os.path.abspath(self.work))
        self.tag_n = 0
        self.cpu_rounds = 1
        self.instrumentation_s: float | None = None
        self.capacity: dict[tuple[str, str, str, int], float] = {}
        self.sessions = 0

    def tag(self) -> str:
        self.tag_n += 1
        return f"{self.run_id}m{self.tag_n}"

    def save(self) -> str:
        return self.run.write(self.opts.out_dir)


def run(opts: Options, display: Display | None = None) -> Run:
    from . import environment

    display = display or QuietDisplay()
    # reliability/soak scenarios: after the sessions, each with workers of its own (bench/reliability.py)
    own = tuple(s for s in opts.scenarios if s.kind in OWN_SESSION_KINDS)
    st = RunState(replace(opts, scenarios=tuple(s for s in opts.scenarios if s not in own)), display)
    os.makedirs(st.work, exist_ok=True)
    uses_redis = any(t.uses_redis() for t in opts.targets)
    if uses_redis:
        from .targets import claim_redis_db

        st.iso = replace(st.iso, redis_db=claim_redis_db(st.iso))
    st.run.environment = environment.capture([t.id for t in opts.targets], st.iso)
    # The stamps' cost: an A/B drain (stamps on/off) in this run; its per-task cost flags noop records.
    from . import instrumentation

    ab = instrumentation.measure(os.path.join(st.work, "cost-ab"))
    st.instrumentation_s = ab["per_task_us"] / 1e6
    pair_s = stamps.instrumentation_cost(os.path.join(st.work, "cost"))
    if any(s.task == "cpu" for s in opts.scenarios):
        from .work import cpu_rounds

        st.cpu_rounds = cpu_rounds(max(s.work_ms for s in opts.scenarios if s.task == "cpu"))
    order = session_order(list(opts.targets), opts.configs, opts.modes, opts.repeats, opts.seed) \
        if st.opts.scenarios else []
    # a session none of whose scenarios runs in its cell (TOML configs/modes/repeats) is not started
    order = [o for o in order if any(s.runs_in(o[2], o[3], o[0]) for s in st.opts.scenarios)]
    st.run.meta = {"profile": opts.profile, "run_id": st.run_id, "seed": opts.seed, "slots": opts.slots,
                   "repeats": opts.repeats, "fallback": opts.fallback,
                   "scenarios": [s.name for s in opts.scenarios],
                   "order": [f"r{r} {t.id} {c} {m}" for r, t, c, m in order],
                   "instrumentation": {"stamp_pair_us": pair_s * 1e6, "ab": ab, "cpu_rounds": st.cpu_rounds},
                   "not_run": not_run(st.opts.scenarios, opts),
                   "interrupted": False, "started": time.time()}
    st.save()
    display.begin(sum(_count(tuple(s for s in st.opts.scenarios if s.runs_in(c, m, r))) for r, _, c, m in order)
                  + len(own) * len(opts.targets) * 2)
    try:
        if opts.ceilings and st.opts.scenarios:
            from . import ceilings

            display.note("measuring raw broker ceilings")
            t_ceil = time.monotonic()
            st.run.ceilings = ceilings.measure(opts.targets, st.iso, quick=opts.profile == "quick")
            st.run.meta["ceilings_seconds"] = round(time.monotonic() - t_ceil, 2)
            st.save()
        for rep, target, cfg, mode in order:
            if uses_redis:
                from .targets import refresh_redis_db

                refresh_redis_db(st.iso)
            t_session = time.monotonic()
            session(st, rep, target, cfg, mode)
            st.run.meta.setdefault("session_seconds", {})[f"r{rep} {target.id} {cfg} {mode}"] = \
                round(time.monotonic() - t_session, 2)
            st.save()
        if own:
            from .reliability import run_own_sessions

            run_own_sessions(st, own)
    except KeyboardInterrupt:
        st.run.meta["interrupted"] = True
        display.note("interrupted: workers stopped, keeping what was measured")
    finally:
        from . import summary

        if any(t.transport == "amqp" for t in opts.targets):
            try:
                from .cleanup import delete_amqp

                st.run.meta["amqp_cleanup"] = delete_amqp(st.iso.amqp_url, st.run_id)
            except Exception as exc:  # noqa: BLE001
                st.run.meta["amqp_cleanup"] = {"error": repr(exc)}
        if uses_redis:
            from .targets import release_redis_db

            try:
                release_redis_db(st.iso)
            except Exception:  # noqa: BLE001, S110 - the lock expires by itself
                pass
        st.run.meta["redis_db"] = st.iso.redis_db if uses_redis else None
        st.run.meta["finished"] = time.time()
        st.run.results = [replace(r, of_floor=summary.of_floor(r, st.run.ceilings)) for r in st.run.results]
        st.run.meta["summary"] = summary.aggregate(st.run.results, st.run.ceilings)
        st.save()
        display.end()
    return st.run


def _base(scenario: Scenario, target: Target, cfg: str, mode: str, rep: int, slots: int) -> Record:
    return Record(scenario=scenario.name, backend=target.id, config=cfg, mode=mode, repeat=rep, n=scenario.n,
                  slots=slots)


def _error_records(st: RunState, rep: int, target: Target, cfg: str, mode: str, why: str,
                   scenarios: tuple[Scenario, ...], flag: str) -> None:
    for sc in scenarios:
        for w in (sc.workers or (1,)):
            rec = replace(_base(sc, target, cfg, mode, rep, w if sc.kind == "scale" else st.opts.slots),
                          workers=w, error=why, flags=(flag,))
            st.run.results.append(rec)
            st.display.done(rec)


def session(st: RunState, rep: int, target: Target, cfg: str, mode: str) -> None:
    opts = st.opts
    key = f"{target.id}/{cfg}/{mode}"
    here = tuple(s for s in opts.scenarios if s.runs_in(cfg, mode, rep))  # scenario TOMLs may restrict cells
    sdir = os.path.join(st.work, "stamps", f"{target.id.replace('+', '-')}-{cfg}-{mode}-r{rep}")
    logs = os.path.join(st.work, "logs")
    os.makedirs(logs, exist_ok=True)
    st.sessions += 1
    # Every session has its own queue names and AMQP prefix (bench_<run>s<k>): a queue declared by one
    # library with its arguments can never meet another library's declaration of the same name.
    iso = replace(st.iso, run_id=f"{st.run_id}s{st.sessions}")
    setup = Setup(target, cfg, opts.slots, iso, sdir, logs)
    try:
        driver = make_driver(mode, setup)
    except Unsupported as exc:
        _error_records(st, rep, target, cfg, mode, str(exc), here, "not-applicable")
        return
    except Exception as exc:  # noqa: BLE001 - missing adapter or library: record it, go on
        _error_records(st, rep, target, cfg, mode, f"{type(exc).__name__}: {exc}", here, "error")
        return
    st.run.configs[key] = driver.describe()
    regular = tuple(s for s in here if s.kind != "scale")
    scale = tuple(s for s in here if s.kind == "scale")
    if scale and not driver.worker_command(1):  # in-process backend: no worker processes to scale
        _error_records(st, rep, target, cfg, mode, "runs in the producer process: there are no worker processes "
                       "to scale", scale, "not-applicable")
        scale = ()
    done: set[str] = set()
    # Harness seconds per phase of this session (where the run's time goes; never a measurement).
    phases: dict[str, Any] = {}
    timer = _PhaseTimer(phases)
    try:
        with timer("isolate"):
            _isolate(st, target, driver)
        if regular:
            with timer("boot"):
                driver.start()
            reader = StampReader(sdir)
            for sc in regular:
                with timer(sc.name):
                    rec = measure(st, driver, reader, sc, rep, target, cfg, mode, opts.slots, 1)
                done.add(sc.name)
                st.run.results.append(rec)
                st.display.done(rec)
            with timer("stop"):
                driver.stop()
        for sc in scale:
            # One boot for the whole series: 1 process, then more are added (1 -> 2 -> 4); each step's
            # gates prove every process consumes before its clock starts (gate-partial otherwise).
            for procs in sc.workers:
                with timer("boot"):
                    if len(driver.procs) > procs:
                        driver.stop()
                    driver.start(processes=procs - len(driver.procs), concurrency=1)
                reader = StampReader(sdir)
                with timer(f"{sc.name}-x{procs}"):
                    rec = measure(st, driver, reader, sc, rep, target, cfg, mode, procs, procs)
                st.run.results.append(rec)
                st.display.done(rec)
            with timer("stop"):
                driver.stop()
            done.add(sc.name)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - a failing backend must not stop the run
        left = tuple(s for s in here if s.name not in done)
        _error_records(st, rep, target, cfg, mode, f"{type(exc).__name__}: {exc}"[:2000], left, "error")
    finally:
        with timer("stop"):
            driver.stop()
        with timer("cleanup"):
            try:
                _isolate(st, target, driver)
            finally:
                driver.close()
        st.run.meta.setdefault("session_phases", {})[f"r{rep} {target.id} {cfg} {mode}"] = \
            {k: round(v, 2) for k, v in phases.items()}


class _PhaseTimer:
    """``with timer("boot"): ...`` adds the block's seconds to ``phases["boot"]``."""

    def __init__(self, phases: dict[str, Any]) -> None:
        self.phases = phases

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.monotonic() - t0


def _isolate(st: RunState, target: Target, driver: Driver) -> None:
    driver.purge()
    if target.uses_redis():
        flush_redis(st.iso)


def _measure_throughput(st: RunState, driver: Driver, reader: StampReader, sc: Scenario, key: tuple[str, str, str, int],
                        slots: int, sampler: Callable[[], Any] | None) -> tuple[runner.Outcome, dict[str, Any]]:
    # scale adds worker processes to running ones: their boot may fall inside the gate phase
    gate_timeout = READY_TIMEOUT if sc.kind == "scale" else runner.GATE_TIMEOUT
    out = runner.measure_throughput(driver, reader, sc, sc.n, st.tag(), slots, st.cpu_rounds, st.display.progress,
                                    sampler, gate_timeout=gate_timeout)
    fields = runner.summarize(out, sc, slots, st.instrumentation_s)
    if sc.name == "throughput-noop" and fields.get("throughput"):
        st.capacity[key] = fields["throughput"]
    return out, fields


def _measure_sporadic(st: RunState, driver: Driver, reader: StampReader, sc: Scenario, key: tuple[str, str, str, int],
                      slots: int, sampler: Callable[[], Any] | None) -> tuple[runner.Outcome, dict[str, Any]]:
    out = runner.measure_sporadic(driver, reader, sc, sc.n, st.tag(), st.cpu_rounds, st.display.progress)
    return out, runner.summarize(out, sc, slots)


def _measure_steady(st: RunState, driver: Driver, reader: StampReader, sc: Scenario, key: tuple[str, str, str, int],
                    slots: int, sampler: Callable[[], Any] | None) -> tuple[runner.Outcome, dict[str, Any]]:
    cap = st.capacity.get(key)
    rate = cap * sc.load if cap else sc.fallback_rate
    waiter = driver.producer_twin()
    try:
        out = runner.measure_steady(driver, waiter, reader, sc, sc.n, rate, st.tag(), st.display.progress)
    finally:
        if waiter is not driver:
            waiter.close()
    fields = runner.summarize(out, sc, slots)
    if not cap:
        fields["flags"] = (*fields["flags"], "rate-from-fallback")
    return out, fields


Measure = Callable[[RunState, Driver, StampReader, Scenario, tuple[str, str, str, int], int, Any],
                   tuple[runner.Outcome, dict[str, Any]]]
# scenario kind -> how one measurement of it is taken inside a session (add a kind here)
MEASURES: dict[str, Measure] = {"throughput": _measure_throughput, "scale": _measure_throughput,
                                "latency-sporadic": _measure_sporadic, "latency-steady": _measure_steady}


def measure(st: RunState, driver: Driver, reader: StampReader, sc: Scenario, rep: int, target: Target, cfg: str,
            mode: str, slots: int, workers: int) -> Record:
    label = f"{sc.name} {target.id} {cfg} {mode} r{rep}" + (f" x{workers}" if sc.kind == "scale" else "")
    st.display.measurement(label, sc.n)
    sampler = None
    if st.opts.resources:
        from .resources import Sampler, default_groups

        def sampler() -> Any:
            return Sampler(default_groups(driver.pids)).start()

    out, rec_fields = MEASURES[sc.kind](st, driver, reader, sc, (target.id, cfg, mode, rep), slots, sampler)
    rec = replace(_base(sc, target, cfg, mode, rep, slots), workers=workers,
                  pool=str(st.run.configs.get(f"{target.id}/{cfg}/{mode}", {}).get("pool", "")),
                  phase_s={k: round(v, 3) for k, v in out.phases.items()} or None, **rec_fields)
    name = results.raw_name(rec)
    results.write_raw(st.opts.out_dir, name, out.bids, out.stamps)
    return replace(rec, raw=name)


def not_run(scenarios: tuple[Scenario, ...], opts: Options) -> list[dict[str, Any]]:
    """The cells a scenario's profile table leaves out (configs, modes, repeats), with the reason."""
    out = []
    for sc in scenarios:
        if not sc.restricted():
            continue
        skipped = [f"r{r} {c} {m}" for r in range(1, opts.repeats + 1) for c in opts.configs for m in opts.modes
                   if not sc.runs_in(c, m, r)]
        if skipped:
            out.append({"scenario": sc.name, "configs": list(sc.configs) or "all", "modes": list(sc.modes) or "all",
                        "repeats": sc.repeats or "all", "cells_not_run": skipped, "why": sc.why})
    return out
