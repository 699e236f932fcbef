"""The bench harness's rules, shown by small real runs on memory:// and huey+sqlite (no broker).

None of these assertions is about speed: they check what was measured and how.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import pytest

from anytask.bench import orchestrate, results, runner, scenarios, stamps
from anytask.bench.driver import FacadeDriver, Setup
from anytask.bench.orchestrate import Options, session_order
from anytask.bench.stamps import StampReader
from anytask.bench.targets import Isolation, Target


def small(names: list[str], n: int) -> tuple[scenarios.Scenario, ...]:
    return tuple(dataclasses.replace(s, n=n, gap_ms=0.0) for s in scenarios.load(names, "quick"))


def setup_for(tmp: str, target: str, config: str = "tuned", slots: int = 2) -> Setup:
    iso = Isolation("t" + os.urandom(3).hex(), workdir=tmp)
    return Setup(Target(target), config, slots, iso, os.path.join(tmp, "stamps"), tmp)


class Faulty(FacadeDriver):
    """Loses one task (never submitted) and duplicates another (submitted twice)."""

    def submit(self, task: str, bid: str, args: tuple[Any, ...]) -> Any:
        if bid.endswith("-3"):
            return None
        h = super().submit(task, bid, args)
        if bid.endswith("-5"):
            super().submit(task, bid, args)
        return h

    def wait(self, handle: Any, timeout: float) -> bool:
        return handle is not None and super().wait(handle, timeout)


def test_lost_and_duplicated_tasks_are_counted_and_flagged_not_dropped(tmp_path: Any) -> None:
    s = setup_for(str(tmp_path), "memory")
    d = Faulty(s)
    try:
        sc = small(["throughput-noop"], 20)[0]
        out = runner.measure_throughput(d, StampReader(s.stamps_dir), sc, 20, "tagA", 2)
        fields = runner.summarize(out, sc, 2)
    finally:
        d.close()
    assert (fields["n"], fields["completed"], fields["lost"], fields["duplicated"]) == (20, 19, 1, 1)
    assert "lost:1" in fields["flags"] and "duplicated:1" in fields["flags"]
    assert fields["throughput"] is not None  # the record keeps its figures


def test_native_huey_workers_are_ready_before_the_clock_and_every_slot_was_gated(tmp_path: Any) -> None:
    from anytask.bench.native import driver_for

    s = setup_for(str(tmp_path), "huey+sqlite", slots=2)
    d = driver_for(s)
    try:
        d.start()  # boot + ping round trip: outside any measured window
        sc = small(["throughput-noop"], 30)[0]
        reader = StampReader(s.stamps_dir)
        out = runner.measure_throughput(d, reader, sc, 30, "tagR", 2)
        pids = d.pids()
    finally:
        d.stop()
        d.purge()
        d.close()
    gates = [reader.stamps[f"tagRg-{i}"] for i in range(2)]
    first_enqueue = min(out.stamps[b].enqueue for b in out.bids)
    first_start = min(t for b in out.bids for t in out.stamps[b].starts)
    # every execution slot was running a gate (consumer registered and busy) before the clock started
    assert all(g.starts and g.starts[0] < out.clock_start for g in gates)
    assert out.ready_at is not None and out.ready_at <= out.clock_start <= first_enqueue
    # the backlog existed: no measured task started before the gates released their slots
    assert first_start >= max(g.ends[0] for g in gates) - 0.05
    assert first_start > max(out.stamps[b].enqueue for b in out.bids)
    assert out.flags == [] and len(out.bids) == 30
    assert pids and not [p for p in pids if _alive(p)]  # nothing left running


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_session_order_is_random_per_repeat_and_complete() -> None:
    targets = [Target(t) for t in ("memory", "huey+sqlite", "rq+redis", "celery+redis", "taskiq+redis")]
    a = session_order(targets, ("defaults", "tuned"), ("native", "facade"), 3, seed=1)
    b = session_order(targets, ("defaults", "tuned"), ("native", "facade"), 3, seed=2)
    assert len(a) == 3 * 5 * 2 * 2 and len({(r, t.id, c, m) for r, t, c, m in a}) == len(a)

    def backends(order: list[Any], rep: int) -> list[str]:
        out: list[str] = []
        for r, t, _c, _m in order:
            if r == rep and t.id not in out:
                out.append(t.id)
        return out

    orders = [backends(a, r) for r in (1, 2, 3)] + [backends(b, r) for r in (1, 2, 3)]
    assert len({tuple(o) for o in orders}) > 1  # not one fixed order
    assert a == session_order(targets, ("defaults", "tuned"), ("native", "facade"), 3, seed=1)  # seeded


def test_a_small_run_writes_run_json_with_the_documented_schema(tmp_path: Any) -> None:
    out = str(tmp_path / "out")
    opts = Options(profile="quick", targets=(Target("memory"), Target("huey+sqlite")),
                   scenarios=small(["throughput-noop", "latency-sporadic"], 25), repeats=1, out_dir=out,
                   slots=2, ceilings=False, resources=True, seed=7)
    run = orchestrate.run(opts)
    with open(os.path.join(out, "run.json")) as fh:
        doc = json.load(fh)
    assert results.validate(doc) == []
    recs = doc["results"]
    # memory has no native library: recorded as not applicable; everything else measured
    measured = [r for r in recs if not r["error"]]
    na = [r for r in recs if "not-applicable" in r["flags"]]
    assert {r["backend"] for r in na} == {"memory"} and {r["mode"] for r in na} == {"native"}
    huey = [r for r in measured if r["backend"] == "huey+sqlite"]
    assert {(r["config"], r["mode"]) for r in huey} == {(c, m) for c in ("defaults", "tuned")
                                                         for m in ("native", "facade")} or \
        any(r["backend"] == "huey+sqlite" and r["error"] for r in recs)
    for r in measured:
        assert r["completed"] == r["n"] == 25 and r["lost"] == 0 and r["duplicated"] == 0
        assert r["slots"] == 2 and r["pool"]
        if r["scenario"] == "throughput-noop":
            assert r["throughput"] > 0 and r["enqueue_rate"] > 0 and r["efficiency"] is not None
            assert r["overhead_ms"] == pytest.approx(1000 / r["throughput"])
        else:
            lat = r["latency_ms"]
            assert lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
            assert lat["enqueue_to_start"]["p50"] > 0 and lat["end_to_result"]["p50"] > 0
        raw = results.read_raw(os.path.join(out, r["raw"]))
        assert len(raw) == 25 and all(x["enqueue"] is not None and len(x["ends"]) == 1 for x in raw)
    # both configurations of each backend are declared
    assert {"memory/defaults/facade", "memory/tuned/facade"} <= set(doc["configs"])
    env = doc["environment"]
    for k in ("python", "cpu_model", "cpu_count", "load_average", "packages", "git_commit"):
        assert k in env
    assert doc["instrumentation"]["stamp_pair_us"] > 0
    assert len(doc["order"]) == len({tuple(o.split()) for o in doc["order"]})
    assert doc["summary"] and run.results


def test_ctrl_c_stops_workers_and_keeps_what_was_measured(tmp_path: Any) -> None:
    out = str(tmp_path / "out")

    class Interrupting(orchestrate.QuietDisplay):
        def __init__(self) -> None:
            self.records = 0

        def done(self, record: Any) -> None:
            self.records += 1
            if self.records == 1 and not record.error:
                raise KeyboardInterrupt

    import psutil

    me = psutil.Process()
    # processes of other tests (e.g. the conformance suite's session-scoped workers) are not the harness's
    before = {c.pid for c in me.children(recursive=True)}
    opts = Options(profile="quick", targets=(Target("huey+sqlite"),), scenarios=small(["throughput-noop"], 20),
                   repeats=1, out_dir=out, configs=("tuned",), modes=("native",), ceilings=False, seed=3)
    orchestrate.run(opts, Interrupting())
    with open(os.path.join(out, "run.json")) as fh:
        doc = json.load(fh)
    assert doc["interrupted"] is True
    assert len(doc["results"]) == 1 and doc["results"][0]["completed"] == 20
    left = [c for c in me.children(recursive=True)
            if c.pid not in before and c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert left == []


def test_default_backends_fall_back_to_sqlite_and_memory_when_no_broker_answers(tmp_path: Any) -> None:
    from anytask.bench import targets

    iso = Isolation("x", workdir=str(tmp_path), redis="127.0.0.1:1", amqp="guest:guest@127.0.0.1:1")
    chosen, fallback = targets.default_targets(iso)
    assert fallback and [t.id for t in chosen] == ["huey+sqlite", "memory"]


def test_stamping_is_off_outside_a_run(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv(stamps.ENV_DIR, raising=False)
    from anytask.bench import work

    work.noop("x")  # no directory configured: nothing written, no error
    assert not os.listdir(tmp_path)


def test_a_time_capped_drain_counts_unfinished_not_lost(tmp_path: Any) -> None:
    s = setup_for(str(tmp_path), "memory")
    d = FacadeDriver(s)
    try:
        sc = dataclasses.replace(small(["throughput-io"], 120)[0], max_drain_s=0.1)
        out = runner.measure_throughput(d, StampReader(s.stamps_dir), sc, 120, "tagC", 2)
        fields = runner.summarize(out, sc, 2)
    finally:
        d.close()
    assert "time-capped:0.1s" in fields["flags"] and not [f for f in fields["flags"] if f.startswith("lost")]
    assert fields["lost"] == 0 and fields["unfinished"] > 0
    assert fields["completed"] + fields["unfinished"] == 120
    assert fields["throughput"] == pytest.approx(fields["completed"] / fields["drain_s"])


def test_cli_bench_run_on_memory_writes_run_json_and_prints_the_tables(tmp_path: Any) -> None:
    import subprocess
    import sys

    out = tmp_path / "cli"
    res = subprocess.run([sys.executable, "-m", "anytask", "bench", "run", "--backends", "memory", "--n", "30",
                          "--scenarios", "throughput-noop,latency-sporadic", "--no-ceilings", "--out", str(out)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "throughput (tasks/s" in res.stdout and "latency (ms" in res.stdout
    doc = json.loads((out / "run.json").read_text())
    assert results.validate(doc) == [] and doc["profile"] == "quick"


def test_the_worker_command_needs_no_bench_dependency() -> None:
    import subprocess
    import sys

    code = ("import sys, anytask.cli as c; c.build_parser(); import anytask.bench.tasks; "
            "bad = [m for m in ('rich', 'psutil', 'matplotlib', 'docker') if m in sys.modules]; "
            "assert not bad, bad")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_cli_run_and_keeps_the_document(tmp_path: Any, signame: str) -> None:
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "sig"
    proc = subprocess.Popen([sys.executable, "-m", "anytask", "bench", "run", "--backends", "memory",
                             "--modes", "facade", "--configs", "tuned", "--scenarios", "latency-sporadic",
                             "--n", "100000", "--no-ceilings", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (out / "run.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # inside the measurement
        proc.send_signal(getattr(signal, signame))
        assert proc.wait(30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    doc = json.loads((out / "run.json").read_text())
    assert doc["interrupted"] is True and "summary" in doc
