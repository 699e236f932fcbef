"""The phases of one measurement, each with its own timer, and the loop over a whole run.

Per (backend, configuration, mode, repeat) a *session* starts the workers once and waits until
they answer a ping (boot is never inside a measured window), then runs each scenario:

* throughput: ``slots`` gate tasks take every execution slot; the harness waits until all of
  them have started (every consumer is registered and busy), enqueues N tasks (enqueue timer),
  opens the gate, and waits for N end stamps (drain window = first start -> last end, from the
  stamps). The producer never polls results inside the drain.
* latency-sporadic: one task at a time after an idle gap; producer waits for each result.
* latency-steady: open-loop arrivals at a fixed interval; a second producer connection waits
  for results in a thread.

Caps keep a slow backend from holding the run (docs/methodology.md, "Time budget"): a drain is cut
at ``max_drain_s`` and latency sampling at ``max_wall_s``, each flagged ``time-capped``. Every
measurement reports its harness phases (``Outcome.phases``), which are accounting, not figures.
"""

from __future__ import annotations

import os
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import metrics
from .driver import Driver
from .scenarios import Scenario
from .stamps import StampReader, TaskStamps, clock

GATE_TIMEOUT = float(os.environ.get("ANYTASK_BENCH_GATE_TIMEOUT", "10"))
STALL_TIMEOUT = float(os.environ.get("ANYTASK_BENCH_STALL_TIMEOUT", "15"))
RESULT_TIMEOUT = float(os.environ.get("ANYTASK_BENCH_RESULT_TIMEOUT", "10"))
POLL = 0.05
CAP_IDLE = 2.0  # at a drain cap: no end stamp for this long means the rest is lost, not merely unfinished
WARMUP = 5  # unrecorded round trips before a latency measurement
MAX_GATES = 32  # gates per slot at most (prefetching workers hold several each)

Progress = Callable[[int, int], None]


def _no_progress(done: int, total: int) -> None:
    pass


@dataclass
class Outcome:
    """What one measured phase produced, before it becomes a :class:`~.results.Record`."""

    bids: list[str]
    stamps: dict[str, TaskStamps]
    enqueue_s: float | None = None
    flags: list[str] = field(default_factory=list)
    resources: dict[str, Any] | None = None
    arrival_rate: float | None = None
    capped: bool = False  # the drain was cut at the scenario's max_drain_s
    clock_start: float | None = None  # when the first measured task was enqueued
    ready_at: float | None = None  # when every slot was known to be consuming (gates started)
    phases: dict[str, float] = field(default_factory=dict)  # harness seconds per phase (not a measurement)


def task_args(scenario: Scenario, cpu_rounds: int) -> tuple[Any, ...]:
    if scenario.task == "io":
        return (scenario.work_ms,)
    if scenario.task == "cpu":
        return (cpu_rounds,)
    if scenario.task == "payload":
        return ("x" * scenario.payload_bytes,)
    return ()


def merge(bids: list[str], worker: dict[str, TaskStamps], producer: dict[str, TaskStamps]) -> dict[str, TaskStamps]:
    """Worker and producer stamps of ``bids``, plus any worker stamps of the same measurement's
    prefix that the producer never enqueued (they show up as ``foreign``)."""
    prefix = bids[0].rsplit("-", 1)[0] + "-" if bids else None
    keys = set(bids) | ({b for b in worker if b.startswith(prefix)} if prefix else set())
    out: dict[str, TaskStamps] = {}
    for b in keys:
        w = worker.get(b) or TaskStamps()
        p = producer.get(b) or TaskStamps()
        out[b] = TaskStamps(enqueue=p.enqueue, starts=list(w.starts), ends=list(w.ends), seen=p.seen)
    return out


def wait_ends(reader: StampReader, bids: list[str], progress: Progress, stall: float = STALL_TIMEOUT,
              cap: float = 0.0) -> bool | str:
    """Poll the stamp files until every bid has an end stamp (True); False if nothing moved for
    ``stall`` s; with ``cap``, "capped" after ``cap`` seconds of a drain that was still moving (an end
    stamp within the last CAP_IDLE s), False if it had stopped moving (the rest is lost)."""
    pending = set(bids)
    last_move = time.monotonic()
    deadline = last_move + cap if cap else None
    while pending:
        if deadline is not None and time.monotonic() > deadline:
            return "capped" if time.monotonic() - last_move <= CAP_IDLE else False
        reader.poll()
        done_now = {b for b in pending if (r := reader.stamps.get(b)) is not None and r.ends}
        if done_now:
            pending -= done_now
            last_move = time.monotonic()
            progress(len(bids) - len(pending), len(bids))
        elif time.monotonic() - last_move > stall:
            return False
        if pending:
            time.sleep(POLL)
    return True


def quiesce(reader: StampReader, quiet: float = 1.0, limit: float = 20.0) -> None:
    """Wait until no new stamp has been written for ``quiet`` seconds."""
    deadline = time.monotonic() + limit
    last = reader.poll(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = reader.poll()
        if now != last[0]:
            last = now, time.monotonic()
        elif time.monotonic() - last[1] >= quiet:
            return


def hold_slots(driver: Driver, reader: StampReader, tag: str, slots: int, release: str,
               timeout: float = GATE_TIMEOUT) -> list[str]:
    """Occupy every execution slot with a gate task; return the gates sent.

    A prefetching worker may take two gates into one process while another process gets none;
    so gates are sent in rounds, doubling, until ``slots`` of them run at once (at most
    MAX_GATES x slots gates, for ``timeout`` s). Gates still waiting in a prefetch buffer run, and
    end at once, after release: a few no-op tasks among the N measured ones.
    """
    gates: list[str] = []
    deadline = time.monotonic() + timeout
    round_end = 0.0
    rounds = 0
    while time.monotonic() < deadline:
        reader.poll()
        started = sum(1 for g in gates if (r := reader.stamps.get(g)) is not None and r.starts)
        if started >= slots:
            break
        now = time.monotonic()
        if now >= round_end and len(gates) < MAX_GATES * slots:
            # each round doubles the gates for the slots still free, so that prefetch buffers fill up
            for _ in range(min((slots - started) * 2 ** rounds, MAX_GATES * slots - len(gates))):
                g = f"{tag}g-{len(gates)}"
                driver.submit("gate", g, (release, 60.0))
                gates.append(g)
            rounds += 1
            round_end = now + 1.0
        time.sleep(0.01)
    reader.poll()
    for g in gates:
        reader.stamps.setdefault(g, TaskStamps())
    return gates


def measure_throughput(driver: Driver, reader: StampReader, scenario: Scenario, n: int, tag: str, slots: int,
                       cpu_rounds: int = 1, progress: Progress = _no_progress,
                       sampler: Callable[[], Any] | None = None, gate_timeout: float = GATE_TIMEOUT) -> Outcome:
    flags: list[str] = []
    release = os.path.join(reader.directory, f"{tag}.release")
    t_gates = clock()
    gates = hold_slots(driver, reader, tag, slots, release, gate_timeout)
    ready_at = clock()
    started = sum(1 for g in gates if reader.stamps[g].starts) if gates else 0
    if started < slots:
        flags.append(f"gate-partial:{started}/{slots}")
    args = task_args(scenario, cpu_rounds)
    bids = [f"{tag}-{i}" for i in range(n)]
    prod: dict[str, TaskStamps] = {}
    handles = []
    t0 = clock()
    for b in bids:
        prod[b] = TaskStamps(enqueue=clock())
        handles.append(driver.submit(scenario.task, b, args))
    enqueue_s = clock() - t0
    sample = sampler() if sampler else None
    with open(release, "w"):
        pass
    ended = wait_ends(reader, bids, progress, cap=scenario.max_drain_s)
    resources = sample.stop() if sample else None
    complete = ended is True
    capped = ended == "capped"
    reader.poll()
    stamps = merge(bids, reader.stamps, prod)  # the measurement: what ended before the drain was over
    if capped:
        # Drop the rest of the backlog and let prefetched tasks finish, so the next scenario starts
        # on an idle worker; what did not finish is reported as unfinished, not lost.
        flags.append(f"time-capped:{scenario.max_drain_s:g}s")
        driver.purge()
        quiesce(reader)
    elif not complete:
        flags.append("stalled")
    t_drained = clock()
    wait_ends(reader, gates, _no_progress, stall=2.0)
    # Outside the measured window: read a sample of results back through the library's own API.
    done = [i for i, b in enumerate(bids) if stamps[b].ends] if capped else list(range(n))
    check = random.Random(tag).sample(done, min(len(done), 20))
    missing = 0
    for i in check:
        try:
            ok = driver.wait(handles[i], RESULT_TIMEOUT if complete else 0.5)
        except Exception:  # noqa: BLE001
            ok = False
        if ok:
            stamps[bids[i]].seen = clock()
        else:
            missing += 1
    if missing:
        flags.append(f"results-missing:{missing}/{len(check)}")
    phases = {"gates": ready_at - t_gates, "enqueue": enqueue_s, "drain": t_drained - t0 - enqueue_s,
              "check": clock() - t_drained}
    return Outcome(bids, stamps, enqueue_s, flags, resources, capped=capped, clock_start=t0, ready_at=ready_at,
                   phases=phases)


def measure_sporadic(driver: Driver, reader: StampReader, scenario: Scenario, n: int, tag: str,
                     cpu_rounds: int = 1, progress: Progress = _no_progress) -> Outcome:
    args = task_args(scenario, cpu_rounds)
    bids = [f"{tag}-{i}" for i in range(n)]
    prod: dict[str, TaskStamps] = {}
    flags: list[str] = []
    misses = 0
    t_warm = clock()
    # Warm-up, not recorded: lets the producer settle after the previous scenario (e.g. Celery's
    # result consumer still holding the subscriptions of a 2000-task drain made the first wait 0.8 s).
    for i in range(WARMUP):
        driver.wait(driver.submit(scenario.task, f"{tag}w-{i}", args), RESULT_TIMEOUT)
    # A fixed gap locks the producer's cycle to the phase of a polling consumer's backoff (Dramatiq's
    # Redis consumer sleeps 5-10, 10-20, 20-40 ms between empty fetches), so a few ms more or less in
    # the producer's own path moved pick-up by a whole poll step; a jittered gap samples every phase.
    rng = random.Random(tag)
    j = scenario.gap_jitter
    t0 = clock()
    deadline = t0 + scenario.max_wall_s if scenario.max_wall_s else None
    for i, b in enumerate(bids):
        if deadline is not None and clock() > deadline:
            # Wall cap: a slow result path (e.g. a 0.2 s polling interval) would hold the run for
            # minutes; keep the i samples taken, say so.
            flags.append(f"time-capped:{scenario.max_wall_s:g}s")
            bids = bids[:i]
            break
        time.sleep(scenario.gap_ms * (1.0 + j * (2.0 * rng.random() - 1.0)) / 1000.0)
        rec = prod[b] = TaskStamps(enqueue=clock())
        h = driver.submit(scenario.task, b, args)
        if driver.wait(h, RESULT_TIMEOUT):
            rec.seen = clock()
            misses = 0
        else:
            misses += 1
            if misses >= 3:
                flags.append(f"aborted-after:{i + 1}")
                bids = bids[: i + 1]
                break
        progress(i + 1, n)
    t_sampled = clock()
    wait_ends(reader, bids, _no_progress, stall=2.0)
    phases = {"warmup": t0 - t_warm, "samples": t_sampled - t0, "collect": clock() - t_sampled}
    return Outcome(bids, merge(bids, reader.stamps, prod), None, flags, clock_start=t0, phases=phases)


def measure_steady(driver: Driver, waiter: Driver, reader: StampReader, scenario: Scenario, n: int, rate: float,
                   tag: str, progress: Progress = _no_progress) -> Outcome:
    """Open loop: task i is submitted at t0 + i/rate; ``waiter`` (its own connection) sees results."""
    args = task_args(scenario, 1)
    bids = [f"{tag}-{i}" for i in range(n)]
    prod = {b: TaskStamps() for b in bids}
    handles: queue.Queue[Any] = queue.Queue()
    flags: list[str] = []

    def wait_all() -> None:
        while True:
            item = handles.get()
            if item is None:
                return
            b, h = item
            try:
                if waiter.wait(h, RESULT_TIMEOUT):
                    prod[b].seen = clock()
            except Exception:  # noqa: BLE001, S110 - a missing result shows as a missing stamp
                pass

    t_warm = clock()
    for i in range(WARMUP):  # unrecorded, as in measure_sporadic
        waiter.wait(driver.submit(scenario.task, f"{tag}w-{i}", args), RESULT_TIMEOUT)
    th = threading.Thread(target=wait_all, name="bench-waiter", daemon=True)
    th.start()
    interval = 1.0 / rate
    t0 = clock()
    late = 0
    # Wall cap: at a slow backend's rate (e.g. 20 tasks/s) the arrivals alone would take minutes.
    cap_at = min(n, int(scenario.max_wall_s * rate) + 1) if scenario.max_wall_s else n
    if cap_at < n:
        flags.append(f"time-capped:{scenario.max_wall_s:g}s")
        bids = bids[:cap_at]
        prod = {b: prod[b] for b in bids}
    for i, b in enumerate(bids):
        due = t0 + i * interval
        now = clock()
        if due > now:
            time.sleep(due - now)
        elif now - due > interval:
            late += 1
        prod[b].enqueue = clock()
        handles.put((b, driver.submit(scenario.task, b, args)))
        progress(i + 1, len(bids))
    t_sent = clock()
    handles.put(None)
    th.join(RESULT_TIMEOUT * 2)
    if late > len(bids) // 10:
        flags.append(f"producer-late:{late}")
    wait_ends(reader, bids, _no_progress, stall=2.0)
    phases = {"warmup": t0 - t_warm, "arrivals": t_sent - t0, "collect": clock() - t_sent}
    return Outcome(bids, merge(bids, reader.stamps, prod), None, flags, arrival_rate=rate, clock_start=t0,
                   phases=phases)


def summarize(outcome: Outcome, scenario: Scenario, slots: int,
              instrumentation_s: float | None = None) -> dict[str, Any]:
    """The record fields computed from an outcome's stamps."""
    s = outcome.stamps
    c = metrics.completeness(outcome.bids, s)
    fields: dict[str, Any] = {"n": len(outcome.bids), "completed": c.completed, "lost": c.lost,
                              "duplicated": c.duplicated, "slots": slots}
    if outcome.capped:  # cut on purpose: the tasks without an end stamp were dropped, not lost
        fields.update(lost=0, unfinished=c.lost)
        c = metrics.Completeness(c.n, c.completed, 0, c.duplicated, c.foreign)
    eff = None
    instr = None
    if scenario.kind in ("throughput", "scale"):
        w = metrics.drain_window(outcome.bids, s)
        if w is not None and w.seconds > 0:
            tput = c.completed / w.seconds
            task_s = scenario.work_ms / 1000.0 if scenario.declared_work else (
                metrics.mean_task_seconds(outcome.bids, s) or 0.0)
            eff = metrics.efficiency(c.completed, task_s, slots, w.seconds)
            fields.update(throughput=tput, overhead_ms=1000.0 / tput, drain_s=w.seconds, ideal_s=eff.ideal_s,
                          efficiency=eff.efficiency, implied_in_flight=eff.implied_in_flight)
            if instrumentation_s is not None and scenario.task == "noop":
                instr = instrumentation_s * tput / max(slots, 1)
        if outcome.enqueue_s:
            fields.update(enqueue_s=outcome.enqueue_s, enqueue_rate=len(outcome.bids) / outcome.enqueue_s)
        if outcome.resources:
            r = outcome.resources
            wk = r.get("workers", {})
            fields["resources"] = r
            fields["rss_mb"] = wk.get("rss_peak_mb")
            if c.completed and wk.get("cpu_s") is not None:
                fields["cpu_s_per_1k"] = wk["cpu_s"] / c.completed * 1000
                if fields.get("drain_s") and wk["cpu_s"] > 0:
                    cores = wk["cpu_s"] / fields["drain_s"]
                    fields["per_core"] = fields["throughput"] / cores
            if fields.get("throughput") and wk.get("rss_peak_mb"):
                fields["per_mb"] = fields["throughput"] / wk["rss_peak_mb"]
    else:
        parts = metrics.latency_parts(outcome.bids, s)
        fields["latency_ms"] = metrics.latency_ms(parts)
        if outcome.arrival_rate:
            fields["arrival_rate"] = outcome.arrival_rate
    fields["flags"] = tuple(metrics.flags(c, eff, declared_work=scenario.declared_work,
                                          instrumentation_fraction=instr, extra=outcome.flags))
    return fields
