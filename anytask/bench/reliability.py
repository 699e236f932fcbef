"""Reliability scenarios (``scenarios/reliability-*.toml``): a fault in the middle of a run, then a
count per task id of what became of every task.

For each backend and each configuration the scenario names (``defaults`` and the facade's
``reliable``), in facade mode: start the workers (ready: they answered a ping), enqueue N tasks that
each sleep ``work_ms``, wait until ``kill_at`` x N of them have ended, then inject the fault:

* ``fault = "kill"``: SIGKILL the whole worker process group (the main process and every pool
  child, like a crashed container), then start the same worker command again;
* ``fault = "restart"``: restart the test-owned persistent broker the backend talks to
  (:mod:`anytask.testing.brokers`: Redis with AOF ``appendfsync always``, or a RabbitMQ node of its
  own), never a shared service; a worker that exits because of the outage is started again.

Then wait until every task has ended or ``deadline_s`` seconds after the fault have passed. Per task
id, from the workers' per-process stamp files (one ``write(2)`` per line, on disk even when the
process is killed right after): ended once, ended more than once (``duplicated``), started more than
once (``redelivered``), never ended (``lost``: a task that only a later recovery would run counts
as lost for this deadline). ``at_least_once_held`` is ``lost == 0``.

:func:`run_own_sessions` is the harness's entry for the kinds that run outside the per-session loop.
"""

from __future__ import annotations

import os
import random
import signal
import time
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

from . import results
from .driver import FacadeDriver, Setup
from .procs import Proc
from .results import Record
from .scenarios import Scenario
from .stamps import StampReader, TaskStamps, clock
from .targets import Isolation, Target

POLL = 0.05
FAULTS = ("kill", "restart")
MAX_RESTARTS = 6  # workers started again after the fault at most (a worker that crashes at boot loops)


def run_own_sessions(st: Any, scenarios: tuple[Scenario, ...]) -> None:
    """Run the reliability and soak scenarios of a run (``st``: orchestrate.RunState)."""
    for sc in scenarios:
        if sc.kind == "soak":
            from . import soak

            soak.run(st, sc)
        else:
            run(st, sc)


def _configs(sc: Scenario) -> tuple[str, ...]:
    value = sc.param("configs", ("defaults", "reliable"))
    return tuple(value) if isinstance(value, (tuple, list)) else (str(value),)


def run(st: Any, sc: Scenario) -> None:
    fault = str(sc.param("fault", "kill"))
    if fault not in FAULTS:
        raise ValueError(f"scenario {sc.name}: fault must be one of {FAULTS}, not {fault!r}")
    rng = random.Random(st.opts.seed)
    order = [(t, c) for t in rng.sample(list(st.opts.targets), len(st.opts.targets)) for c in _configs(sc)]
    with ExitStack() as stack:
        owned = OwnedBrokers(stack) if fault == "restart" else None
        for target, cfg in order:
            refresh_lock(st)
            t0 = time.monotonic()
            rec = measure(st, sc, target, cfg, owned)
            st.run.meta.setdefault("session_seconds", {})[f"{sc.name} {target.id} {cfg} facade"] = \
                round(time.monotonic() - t0, 2)
            st.run.results.append(rec)
            st.display.done(rec)
            st.save()


def refresh_lock(st: Any) -> None:
    """Keep this run's claim on its bench Redis database (the lock has a TTL)."""
    if any(t.uses_redis() for t in st.opts.targets):
        from .targets import refresh_redis_db

        try:
            refresh_redis_db(st.iso)
        except Exception:  # noqa: BLE001, S110 - the next refresh tries again
            pass


class OwnedBrokers:
    """The test-owned persistent brokers of a restart scenario, started on first use."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.redis: Any = None
        self.rabbit: Any = None

    def for_target(self, target: Target) -> Any:
        from anytask.testing import brokers

        if target.transport == "redis":
            if self.redis is None:
                self.redis = self.stack.enter_context(brokers.owned_redis())
            return self.redis
        if self.rabbit is None:
            self.rabbit = self.stack.enter_context(brokers.owned_rabbitmq())
        return self.rabbit


def _record(sc: Scenario, target: Target, cfg: str, slots: int, **kw: Any) -> Record:
    return Record(scenario=sc.name, backend=target.id, config=cfg, mode="facade", repeat=1, n=sc.n, slots=slots,
                  **kw)


def not_applicable(sc: Scenario, target: Target, cfg: str, slots: int, why: str) -> Record:
    return _record(sc, target, cfg, slots, error=why, flags=("not-applicable",),
                   details={"delivery": _declared(target, cfg)})


def _declared(target: Target, cfg: str) -> str | None:
    """The backend's declared delivery guarantee in ``cfg`` (Capabilities.delivery_text), without connecting."""
    try:
        from anytask.facade.backends import BACKENDS, load_adapter_class

        return str(load_adapter_class(BACKENDS[target.id]).capabilities.delivery_text(cfg))
    except Exception:  # noqa: BLE001 - description only
        return None


def measure(st: Any, sc: Scenario, target: Target, cfg: str, owned: OwnedBrokers | None) -> Record:
    from .orchestrate import flush_redis

    fault = str(sc.param("fault", "kill"))
    slots = st.opts.slots
    if target.id == "memory":
        return not_applicable(sc, target, cfg, slots, "memory:// runs tasks in the producer process: there is no "
                                                       "worker process to kill and no broker to restart")
    if fault == "restart" and target.transport not in ("redis", "amqp"):
        return not_applicable(sc, target, cfg, slots, f"{target.id} has no broker process to restart")
    st.sessions += 1
    iso: Isolation = replace(st.iso, run_id=f"{st.run_id}f{st.sessions}")
    broker = None
    try:
        if owned is not None:
            broker = owned.for_target(target)
            iso = replace(iso, redis=f"127.0.0.1:{broker.port}", redis_db=0) if target.transport == "redis" \
                else replace(iso, amqp=broker.amqp)
        timers = reliable_timers(sc, target, cfg)
        if timers:
            iso = replace(iso, url_params=timers)
    except Exception as exc:  # noqa: BLE001 - no broker binary: say so in the record
        return _record(sc, target, cfg, slots, error=f"test-owned broker: {type(exc).__name__}: {exc}"[:2000],
                       flags=("error",))
    sdir = os.path.join(st.work, "stamps", f"{sc.name}-{target.id.replace('+', '-')}-{cfg}")
    logs = os.path.join(st.work, "logs")
    os.makedirs(logs, exist_ok=True)
    setup = Setup(target, cfg, slots, iso, sdir, logs)
    st.display.measurement(f"{sc.name} {target.id} {cfg} facade", sc.n)
    driver = None
    try:
        driver = FacadeDriver(setup)
        st.run.configs[f"{target.id}/{cfg}/facade/{sc.name}"] = driver.describe()
        delivery = str(driver.client.capabilities.delivery_text(cfg))  # the promise of this configuration
        if target.uses_redis():
            flush_redis(iso)
        driver.purge()
        out = inject(driver, StampReader(sdir), sc, fault, broker, st.tag(), st.display.progress)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - a failing backend must not stop the run
        return _record(sc, target, cfg, slots, error=f"{type(exc).__name__}: {exc}"[:2000], flags=("error",))
    finally:
        if driver is not None:
            driver.stop()
            driver.purge()
            driver.close()
        if target.uses_redis():
            try:
                flush_redis(iso)
            except Exception:  # noqa: BLE001, S110 - the next measurement flushes again
                pass
    out["fields"]["details"]["delivery"] = delivery
    described = st.run.configs[f"{target.id}/{cfg}/facade/{sc.name}"]
    rec = _record(sc, target, cfg, slots, pool=str(described.get("pool", "")),
                  **out.pop("fields"))
    name = results.raw_name(rec)
    results.write_raw(st.opts.out_dir, name, out["bids"], out["stamps"])
    return replace(rec, raw=name)


def reliable_timers(sc: Scenario, target: Target, cfg: str) -> str:
    """URL parameters the scenario sets for ``cfg`` on this backend (``[params.<cfg>_url]``).

    The libraries that give a dead worker's messages back only after a timer (kombu's
    visibility_timeout, 1 h; Dramatiq's and RQ's worker heartbeats, 60/90 s; taskiq-redis's
    idle_timeout, 600 s) cannot show redelivery within a deadline of seconds with their defaults.
    The scenario declares shorter timers for the ``reliable`` configuration (safe for its 50 ms
    tasks: a timer shorter than a task's run time would deliver a running task twice) and the
    record's config shows them.
    """
    table = sc.param(f"{cfg}_url", {}) or {}
    return str(table.get(target.id, "")) if isinstance(table, dict) else ""


def count(bids: list[str], stamps: dict[str, TaskStamps]) -> dict[str, int]:
    """Per task id: ended once, ended more than once, started more than once, never ended."""
    ends = [len(stamps[b].ends) if b in stamps else 0 for b in bids]
    starts = [len(stamps[b].starts) if b in stamps else 0 for b in bids]
    return {"completed_once": sum(1 for e in ends if e == 1), "duplicated": sum(1 for e in ends if e > 1),
            "lost": sum(1 for e in ends if e == 0), "redelivered": sum(1 for s in starts if s > 1),
            "never_started": sum(1 for s in starts if s == 0)}


def _ended(reader: StampReader, bids: list[str]) -> int:
    reader.poll()
    return reader.ended(bids)


def _running(reader: StampReader, bids: list[str]) -> int:
    return sum(1 for b in bids if (r := reader.stamps.get(b)) is not None and len(r.starts) > len(r.ends))


def inject(driver: FacadeDriver, reader: StampReader, sc: Scenario, fault: str, broker: Any, tag: str,
           progress: Any) -> dict[str, Any]:
    """Start workers, enqueue N tasks, inject the fault at ``kill_at`` x N ends, wait for the rest."""
    n = sc.n
    kill_at = float(sc.param("kill_at", 0.3))  # type: ignore[arg-type]
    deadline_s = float(sc.param("deadline_s", 20.0))  # type: ignore[arg-type]
    down_s = float(sc.param("down_s", 0.0))  # type: ignore[arg-type]
    flags: list[str] = []
    driver.start()
    bids = [f"{tag}-{i}" for i in range(n)]
    prod = {b: TaskStamps() for b in bids}
    t_start = clock()
    for b in bids:
        prod[b].enqueue = clock()
        driver.submit("io", b, (sc.work_ms,))
    enqueue_s = clock() - t_start
    target_n = max(1, int(n * kill_at))
    limit = time.monotonic() + max(30.0, n * sc.work_ms / 1000.0)
    while time.monotonic() < limit:
        # the fault comes mid-task: once kill_at x N have ended and some task is running right now
        if _ended(reader, bids) >= target_n and _running(reader, bids):
            break
        for p in driver.procs:
            if not p.alive():
                raise RuntimeError(f"worker exited before the fault: {' '.join(p.cmd)}\n{p.output()}")
        time.sleep(POLL / 10)
    ended_at_fault = reader.ended(bids)
    running_at_fault = _running(reader, bids)
    if not running_at_fault:
        flags.append("no-task-running-at-fault")
    t_fault = clock()
    restarts = 0
    fault_info: dict[str, Any] = {"fault": fault, "at_ended": ended_at_fault, "running_at_fault": running_at_fault}
    if fault == "kill":
        fault_info.update(kill_workers(driver))
        restart_workers(driver, 1)
        restarts = 1
    else:
        t_down = time.monotonic()
        broker.restart(down_for=down_s)
        fault_info["broker_down_s"] = round(time.monotonic() - t_down, 3)
    deadline = time.monotonic() + deadline_s
    last_progress = -1
    while time.monotonic() < deadline:
        done = _ended(reader, bids)
        if done != last_progress:
            progress(done, n)
            last_progress = done
        if done >= n:
            break
        dead = [p for p in driver.procs if not p.alive()]
        if dead and restarts < MAX_RESTARTS:  # e.g. a worker giving up on a lost broker: started again
            driver.procs = [p for p in driver.procs if p.alive()]
            for p in dead:
                p.stop()
            restart_workers(driver, len(dead))
            restarts += len(dead)
            if "worker-restarted" not in flags:
                flags.append("worker-restarted")
            time.sleep(0.5)
        time.sleep(POLL)
    complete = _ended(reader, bids) >= n
    t_settled = clock()
    # Let a task that was running at the deadline end, then stop the workers; what ended until then counts.
    time.sleep(min(1.0, sc.work_ms / 1000.0 * 4))
    driver.stop()
    reader.poll()
    stamps = {}
    for b in bids:
        r = reader.stamps.get(b) or TaskStamps()
        stamps[b] = TaskStamps(enqueue=prod[b].enqueue, starts=list(r.starts), ends=list(r.ends))
    c = count(bids, stamps)
    last_end = max((e for b in bids for e in stamps[b].ends), default=None)
    if c["lost"]:
        flags.append(f"lost:{c['lost']}")
    if c["duplicated"]:
        flags.append(f"duplicated:{c['duplicated']}")
    if not complete:
        flags.append(f"deadline:{deadline_s:g}s")
    details = {**fault_info, "kill_at": kill_at, "deadline_s": deadline_s, "work_ms": sc.work_ms,
               "completed_once": c["completed_once"], "redelivered": c["redelivered"],
               "never_started": c["never_started"], "worker_restarts": restarts, "enqueue_s": round(enqueue_s, 4),
               "recovery_s": round(last_end - t_fault, 3) if last_end is not None and last_end > t_fault else None,
               "waited_s": round(t_settled - t_fault, 3)}
    fields = {"completed": c["completed_once"] + c["duplicated"], "lost": c["lost"], "duplicated": c["duplicated"],
              "at_least_once_held": c["lost"] == 0, "details": details, "flags": tuple(flags),
              "enqueue_s": enqueue_s, "enqueue_rate": n / enqueue_s if enqueue_s > 0 else None}
    return {"fields": fields, "bids": bids, "stamps": stamps}


def _tree(pid: int) -> set[int]:
    """``pid`` and its descendants (psutil); only ``pid`` when psutil is missing."""
    try:
        import psutil

        return {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}
    except ImportError:
        return {pid}
    except Exception:  # noqa: BLE001 - gone already
        return set()


def _signal_all(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def kill_workers(driver: FacadeDriver) -> dict[str, Any]:
    """SIGKILL every worker process and all its descendants at once, as when a container dies.

    The process group is not enough: RQ's work horse calls ``setsid()`` and would finish its job as an
    orphan. So: SIGSTOP the tree (no new forks), list it again, then SIGKILL the group and every
    process listed."""
    leaders: list[int] = []
    tree: set[int] = set()
    for p in driver.procs:
        if p.proc is None:
            continue
        pid = p.proc.pid
        first = _tree(pid)
        _signal_all(first, signal.SIGSTOP)
        procs = first | _tree(pid)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _signal_all(procs, signal.SIGKILL)
        p.proc.wait(10)
        leaders.append(pid)
        tree |= procs
    driver.procs = []
    return {"killed_pids": leaders, "killed_processes": len(tree)}


def restart_workers(driver: FacadeDriver, k: int) -> None:
    """Start ``k`` workers again with the same command, without a readiness ping (a ping would queue
    behind the backlog); the stamps show when they start working."""
    slots = driver.setup.slots
    for _ in range(k):
        cmd = driver.worker_command(slots)
        if cmd is None:
            return
        log = os.path.join(driver.setup.log_dir, f"{driver.setup.target.id}-facade-{driver.setup.config}-"
                                                 f"{len(driver.procs)}-restarted.log")
        driver.procs.append(Proc(cmd, driver.worker_env(slots), log).start())
