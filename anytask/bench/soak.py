"""Soak (``scenarios/soak.toml``, ``anytask bench run --profile soak``): many no-op tasks through one
backend at a time, in facade mode and the ``defaults`` configuration, checking that nothing grows.

* The producer submits in batches and keeps at most ``max_backlog`` tasks waiting (a soak measures
  steady state, not a queue of 100,000), and stops submitting after ``max_s`` seconds (flagged
  ``time-capped``: the library could not take N tasks in that time).
* RSS of the worker process tree and of the producer (this process, the client) are sampled every
  ``sample_s`` s (psutil). The baseline is the first sample after ``warmup`` x N tasks have ended;
  growth = median of the last three samples under load / baseline - 1, flagged over ``rss_growth_max``.
* Every task is submitted with ``result_ttl`` (short, a few seconds), so its state record and result
  must expire. Redis ``used_memory`` and the key count of the bench database are read before the first
  submit (workers running), after the last task ended, and after the TTL (polled until the key count is
  back or ``result_ttl`` x 2 + 15 s have passed); flagged ``redis-not-returned`` when keys or memory
  stay above the baseline (keys: + ``key_slack``; memory: + 10 % + 1 MiB).

The producer does not keep handles or per-task stamps (its RSS is the client's): the workers' stamp
files are only counted (``E`` lines), not parsed into per-task records.
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from dataclasses import replace
from typing import Any

from .driver import FacadeDriver, Setup
from .results import Record
from .scenarios import Scenario
from .stamps import StampReader, TaskStamps
from .targets import Target

CONFIG = "defaults"
WINDOW = 5  # samples per median window of the RSS growth


class _Tally:
    """Stands in for a stamp list: counts appends, keeps nothing."""

    def __init__(self) -> None:
        self.n = 0

    def append(self, _: float) -> None:
        self.n += 1


class _Sink(dict):  # type: ignore[type-arg]
    """Every bench id maps to one record of tallies: lines are counted, not stored per task."""

    def __init__(self) -> None:
        super().__init__()
        self.starts, self.ends = _Tally(), _Tally()
        self.record = TaskStamps(starts=self.starts, ends=self.ends)  # type: ignore[arg-type]

    def get(self, key: Any, default: Any = None) -> Any:
        return self.record


class EndCounter(StampReader):
    """A :class:`StampReader` that counts start and end lines instead of keeping per-task stamps."""

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self.stamps = _Sink()

    @property
    def ends(self) -> int:
        return self.end_lines

    @property
    def starts(self) -> int:
        return self.stamps.starts.n  # type: ignore[attr-defined, no-any-return]


def _p(sc: Scenario, key: str, default: float) -> float:
    return float(sc.param(key, default))  # type: ignore[arg-type]


def run(st: Any, sc: Scenario) -> None:
    from .reliability import refresh_lock

    rng = random.Random(st.opts.seed)
    for target in rng.sample(list(st.opts.targets), len(st.opts.targets)):
        refresh_lock(st)
        t0 = time.monotonic()
        rec = measure(st, sc, target)
        st.run.meta.setdefault("session_seconds", {})[f"{sc.name} {target.id} {CONFIG} facade"] = \
            round(time.monotonic() - t0, 2)
        st.run.results.append(rec)
        st.display.done(rec)
        st.save()


def redis_snapshot(client: Any) -> dict[str, int]:
    info = client.info("memory")
    return {"used_memory": int(info["used_memory"]), "keys": int(client.dbsize())}


def largest_keys(client: Any, limit: int = 5, scan: int = 500) -> list[dict[str, Any]]:
    """The biggest keys left in the bench database (MEMORY USAGE), to show what did not expire."""
    out = []
    for i, k in enumerate(client.scan_iter(count=200)):
        if i >= scan:
            break
        out.append({"key": k.decode(errors="replace"), "bytes": int(client.memory_usage(k) or 0),
                    "ttl_s": int(client.ttl(k))})
    return sorted(out, key=lambda x: -x["bytes"])[:limit]


class RssSampler:
    """Worker-tree and producer RSS every ``interval`` s, with the tasks ended at that moment."""

    def __init__(self, worker_pids: Any, counter: EndCounter, interval: float) -> None:
        self.worker_pids = worker_pids
        self.counter = counter
        self.interval = interval
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-rss", daemon=True)
        self.t0 = time.monotonic()

    def _loop(self) -> None:
        from .resources import _rss, _tree

        while not self._stop.wait(self.interval):
            procs = [p for pid in self.worker_pids() for p in _tree(pid)]
            self.samples.append({"t": round(time.monotonic() - self.t0, 2), "ended": self.counter.ends,
                                 "worker_mb": round(_rss(procs), 2),
                                 "client_mb": round(_rss(_tree(os.getpid(), recursive=False)), 2)})

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def growth(samples: list[dict[str, float]], key: str, warm_ended: int, loaded_until: int,
           window: int = WINDOW) -> dict[str, Any] | None:
    """RSS growth after warm-up: median of the first ``window`` samples once ``warm_ended`` tasks have
    ended (baseline) against the median of the last ``window`` samples taken while tasks were still
    ending (ended < ``loaded_until``). Medians of windows, since a tree with fork-per-job children
    (RQ's work horses) has a different RSS from one sample to the next."""
    after = [s for s in samples if s["ended"] >= warm_ended and s[key] > 0]
    loaded = [s for s in after if s["ended"] < loaded_until] or after
    if len(loaded) < 2:
        return None
    w = max(1, min(window, len(loaded) // 2))
    base = statistics.median(s[key] for s in loaded[:w])
    end = statistics.median(s[key] for s in loaded[-w:])
    return {"baseline_mb": base, "end_mb": end, "peak_mb": max(s[key] for s in after),
            "growth": round(end / base - 1, 4) if base else None}


def measure(st: Any, sc: Scenario, target: Target) -> Record:
    from .orchestrate import flush_redis
    from .reliability import not_applicable
    from .stamps import clock

    slots = st.opts.slots
    ttl = _p(sc, "result_ttl", 5)
    if target.id == "memory":
        return not_applicable(sc, target, CONFIG, slots, "memory:// keeps records in the producer process: "
                                                          "no worker process and no Redis to watch")
    st.sessions += 1
    iso = replace(st.iso, run_id=f"{st.run_id}k{st.sessions}")
    sdir = os.path.join(st.work, "stamps", f"{sc.name}-{target.id.replace('+', '-')}")
    logs = os.path.join(st.work, "logs")
    os.makedirs(logs, exist_ok=True)
    st.display.measurement(f"{sc.name} {target.id} {CONFIG} facade", sc.n)
    flags: list[str] = []
    driver = rclient = sampler = None
    details: dict[str, Any] = {"result_ttl": ttl}
    try:
        driver = FacadeDriver(Setup(target, CONFIG, slots, iso, sdir, logs))
        st.run.configs[f"{target.id}/{CONFIG}/facade/{sc.name}"] = driver.describe()
        from anytask.facade.capabilities import Feature

        if driver.client.capabilities.supports(Feature.RESULT_TTL):
            driver.tasks["noop"] = driver.tasks["noop"].using(result_ttl=ttl)
        else:
            flags.append("no-result-ttl")
        if target.uses_redis():
            import redis

            flush_redis(iso)
            rclient = redis.Redis.from_url(iso.redis_url, socket_connect_timeout=2)
        driver.purge()
        driver.start()
        counter = EndCounter(sdir)
        counter.poll()
        before_ends = counter.ends  # the readiness ping does not stamp; stays 0
        if rclient is not None:
            details["redis_before"] = redis_snapshot(rclient)
        sampler = RssSampler(driver.pids, counter, _p(sc, "sample_s", 1.0)).start()
        n, batch, backlog = sc.n, int(_p(sc, "batch", 200)), int(_p(sc, "max_backlog", 2000))
        budget = _p(sc, "max_s", 600)
        t0 = clock()
        submitted = 0
        while submitted < n:
            if clock() - t0 > budget:
                flags.append(f"time-capped:{budget:g}s")
                break
            if submitted - (counter.poll() - before_ends) > backlog:
                time.sleep(0.02)
                continue
            for i in range(submitted, min(n, submitted + batch)):
                driver.submit("noop", f"k{i}", ())
            submitted = min(n, submitted + batch)
            st.display.progress(counter.ends, n)
        submit_s = clock() - t0
        last, last_move = counter.poll(), time.monotonic()
        while counter.ends - before_ends < submitted and time.monotonic() - last_move < 30:
            time.sleep(0.1)
            if counter.poll() != last:
                last, last_move = counter.ends, time.monotonic()
                st.display.progress(counter.ends, n)
        drain_s = clock() - t0
        ended = counter.ends - before_ends
        sampler.stop()
        if ended < submitted:
            flags.append(f"lost:{submitted - ended}")
        details.update(submitted=submitted, ends=ended, submit_s=round(submit_s, 2), wall_s=round(drain_s, 2),
                       throughput=round(ended / drain_s, 1) if drain_s > 0 else None)
        warm = int(submitted * _p(sc, "warmup", 0.1))
        limit = _p(sc, "rss_growth_max", 0.10)
        for key, label in (("worker_mb", "worker"), ("client_mb", "client")):
            g = growth(sampler.samples, key, warm, ended)
            details[f"rss_{label}"] = g
            if g and g["growth"] is not None and g["growth"] > limit:
                flags.append(f"rss-growth:{label}:{g['growth'] * 100:.0f}%")
        details["rss_samples"] = sampler.samples
        if rclient is not None:
            details["redis_after"] = redis_snapshot(rclient)
            before = details["redis_before"]
            slack = int(_p(sc, "key_slack", 20))
            t_exp = time.monotonic()
            end_by = t_exp + ttl * 2 + 15
            snap = redis_snapshot(rclient)
            while snap["keys"] > before["keys"] + slack and time.monotonic() < end_by:
                time.sleep(0.5)
                snap = redis_snapshot(rclient)
            details["redis_after_ttl"] = snap
            details["expired_in_s"] = round(time.monotonic() - t_exp, 2)
            returned = (snap["keys"] <= before["keys"] + slack
                        and snap["used_memory"] <= before["used_memory"] * 1.10 + 2**20)
            details["redis_returned"] = returned
            details["largest_keys_after_ttl"] = largest_keys(rclient)
            if not returned:
                flags.append("redis-not-returned")
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - a failing backend must not stop the run
        return Record(scenario=sc.name, backend=target.id, config=CONFIG, mode="facade", repeat=1, n=sc.n,
                      slots=slots, error=f"{type(exc).__name__}: {exc}"[:2000], flags=("error",), details=details)
    finally:
        if sampler is not None:
            sampler.stop()
        if driver is not None:
            driver.stop()
            driver.purge()
            driver.close()
        if rclient is not None:
            rclient.close()
        if target.uses_redis():
            try:
                flush_redis(iso)
            except Exception:  # noqa: BLE001, S110
                pass
    wk = details.get("rss_worker") or {}
    return Record(scenario=sc.name, backend=target.id, config=CONFIG, mode="facade", repeat=1, n=details["submitted"],
                  completed=min(details["ends"], details["submitted"]),
                  lost=max(0, details["submitted"] - details["ends"]), slots=slots,
                  pool=str(st.run.configs[f"{target.id}/{CONFIG}/facade/{sc.name}"].get("pool", "")),
                  throughput=details.get("throughput"), rss_mb=wk.get("peak_mb"), flags=tuple(flags),
                  details=details)
