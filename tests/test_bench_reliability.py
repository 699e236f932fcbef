"""The reliability scenarios, run for real: worker processes of each library killed with SIGKILL
mid-run on a real Redis (ANYTASK_TEST_REDIS), then every task id accounted for.

The assertions are about the harness's accounting, never about which library loses what (that is
the measurement): every task is either ended (once or more) or lost, the fault really came mid-run
and really killed the workers, the restarted workers went on, and the record agrees with the raw
per-task stamps.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from anytask.bench import orchestrate, reliability, results, scenarios, stamps
from anytask.bench.orchestrate import Options
from anytask.bench.stamps import StampReader, TaskStamps
from anytask.bench.targets import Isolation, Target, answers
from anytask.testing.backends import REDIS

KILL_BACKENDS = ("huey+redis", "rq+redis", "celery+redis")


def _redis_or_skip() -> None:
    host, _, port = REDIS.rpartition(":")
    if not answers(host, int(port)):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"Redis at {REDIS} does not answer (ANYTASK_TEST_REDIS)")
        pytest.skip(f"Redis at {REDIS} does not answer (set ANYTASK_TEST_REDIS)")


def small(name: str, n: int, **params: Any) -> scenarios.Scenario:
    sc = scenarios.load([name], "quick")[0]
    merged = {**dict(sc.params), **params}
    return dataclasses.replace(sc, n=n, params=tuple(sorted(merged.items())))


def run_small(tmp: str, backends: tuple[str, ...], scs: tuple[scenarios.Scenario, ...],
              monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(orchestrate, "Isolation", functools.partial(Isolation, redis=REDIS))
    opts = Options(profile="quick", targets=tuple(Target(b) for b in backends), scenarios=scs, repeats=1,
                   out_dir=tmp, ceilings=False, resources=False, seed=7)
    orchestrate.run(opts)
    with open(os.path.join(tmp, "run.json")) as fh:
        doc: dict[str, Any] = json.load(fh)
    return doc


def test_a_stamp_written_just_before_sigkill_is_on_disk(tmp_path: Any) -> None:
    code = ("import os, signal; from anytask.bench import stamps; stamps.stamp('S', 'k1'); stamps.stamp('E', 'k1'); "
            "stamps.stamp('S', 'k2'); os.kill(os.getpid(), signal.SIGKILL)")
    env = {**os.environ, stamps.ENV_DIR: str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    reader = StampReader(str(tmp_path))
    reader.poll()
    assert len(reader.stamps["k1"].ends) == 1 and len(reader.stamps["k2"].starts) == 1
    assert reader.stamps["k2"].ends == []  # killed while "running": a start without an end


def test_count_sorts_each_task_id_into_exactly_one_outcome() -> None:
    s = {"a": TaskStamps(starts=[1.0], ends=[2.0]), "b": TaskStamps(starts=[1.0, 3.0], ends=[4.0]),
         "c": TaskStamps(starts=[1.0, 2.0], ends=[1.5, 2.5]), "d": TaskStamps(starts=[1.0])}
    c = reliability.count(["a", "b", "c", "d", "e"], s)
    assert c == {"completed_once": 2, "duplicated": 1, "lost": 2, "redelivered": 2, "never_started": 1}


def test_scenario_files_carry_their_fault_parameters() -> None:
    for profile in ("quick", "full"):
        kill, restart = scenarios.load(["reliability-kill", "reliability-restart"], profile)
        assert (kill.kind, kill.param("fault"), restart.param("fault")) == ("reliability", "kill", "restart")
        assert kill.param("configs") == ("defaults", "reliable") and kill.work_ms == 50
        assert float(kill.param("deadline_s")) > 0  # type: ignore[arg-type]
    assert "reliability-kill" in scenarios.PROFILES["full"].scenarios
    assert "reliability-kill" not in scenarios.PROFILES["quick"].scenarios
    assert scenarios.PROFILES["soak"].scenarios == ("soak",)


def test_kill_9_mid_run_every_task_id_is_accounted_for(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _redis_or_skip()
    n = 40
    sc = small("reliability-kill", n, deadline_s=6.0)
    doc = run_small(str(tmp_path), KILL_BACKENDS, (sc,), monkeypatch)
    assert results.validate(doc) == []
    recs = doc["results"]
    assert sorted((r["backend"], r["config"]) for r in recs) == sorted(
        (b, c) for b in KILL_BACKENDS for c in ("defaults", "reliable"))
    for r in recs:
        label = f"{r['backend']} {r['config']}"
        assert r["error"] is None, f"{label}: {r['error']}"
        d = r["details"]
        assert r["completed"] + r["lost"] == n, label
        assert d["completed_once"] + r["duplicated"] == r["completed"], label
        assert r["at_least_once_held"] is (r["lost"] == 0), label
        assert ("lost:%d" % r["lost"] in r["flags"]) is (r["lost"] > 0), label
        # the fault came mid-run, and SIGKILL really ended the worker group
        assert int(n * 0.3) <= d["at_ended"] < n, label
        assert d["killed_pids"] and d["worker_restarts"] >= 1, label
        for pid in d["killed_pids"]:
            with pytest.raises(ProcessLookupError):
                os.killpg(pid, 0)
        # the restarted worker went on with the backlog
        assert r["completed"] > d["at_ended"] and d["recovery_s"] is not None, label
        assert d["delivery"], label  # the declared promise travels with the record
        # the record is what the raw per-task stamps say
        raw = results.read_raw(os.path.join(str(tmp_path), r["raw"]))
        assert len(raw) == n
        by_id = {x["id"]: TaskStamps(starts=x["starts"], ends=x["ends"]) for x in raw}
        c = reliability.count(list(by_id), by_id)
        assert (c["lost"], c["duplicated"], c["redelivered"]) == (r["lost"], r["duplicated"], d["redelivered"])
    # nothing left running: every process group the harness started is gone
    assert doc["interrupted"] is False


def test_memory_gets_a_not_applicable_record_with_the_reason(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sc = small("reliability-restart", 10)
    doc = run_small(str(tmp_path), ("memory", "huey+sqlite"), (sc,), monkeypatch)
    recs = {(r["backend"], r["config"]): r for r in doc["results"]}
    assert len(recs) == 4
    for r in recs.values():
        assert r["flags"] == ["not-applicable"] and r["at_least_once_held"] is None
    assert "no worker process" in recs[("memory", "defaults")]["error"]
    assert "no broker process to restart" in recs[("huey+sqlite", "reliable")]["error"]
