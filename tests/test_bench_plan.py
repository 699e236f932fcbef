"""The harness's time budget rules: wall caps, per-cell scenario restrictions, the dry-run plan,
the instrumentation A/B and the adapters' worker descriptions. Real runs on memory:// and
huey+sqlite (no broker); no assertion is about speed."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
from typing import Any

import pytest

from anytask.bench import instrumentation, orchestrate, plan, runner, scenarios
from anytask.bench.driver import FacadeDriver, Setup
from anytask.bench.orchestrate import Options
from anytask.bench.stamps import StampReader
from anytask.bench.targets import Isolation, Target


def _setup(tmp: str, target: str = "memory", config: str = "tuned") -> Setup:
    iso = Isolation("p" + os.urandom(3).hex(), workdir=tmp)
    return Setup(Target(target), config, 2, iso, os.path.join(tmp, "stamps"), tmp)


def test_a_latency_wall_cap_keeps_the_samples_taken_and_flags_the_record(tmp_path: Any) -> None:
    s = _setup(str(tmp_path))
    d = FacadeDriver(s)
    sc = dataclasses.replace(scenarios.load(["latency-sporadic"], "quick")[0], n=1_000_000, gap_ms=1.0,
                             max_wall_s=0.3)
    try:
        out = runner.measure_sporadic(d, StampReader(s.stamps_dir), sc, sc.n, "tagW")
        fields = runner.summarize(out, sc, 2)
    finally:
        d.close()
    assert "time-capped:0.3s" in fields["flags"]
    assert 0 < fields["n"] < sc.n  # n is what was sampled, not what was asked for
    assert fields["completed"] == fields["n"] and fields["lost"] == 0
    assert set(out.phases) == {"warmup", "samples", "collect"}


def test_restricted_scenarios_run_only_in_their_cells_and_the_rest_is_declared(tmp_path: Any) -> None:
    noop, spor = scenarios.load(["throughput-noop", "latency-sporadic"], "quick")
    only = dataclasses.replace(spor, n=10, gap_ms=0.0, configs=("tuned",), repeats=1, why="test budget")
    opts = Options(profile="quick", targets=(Target("memory"),), scenarios=(dataclasses.replace(noop, n=20), only),
                   repeats=2, out_dir=str(tmp_path / "out"), modes=("facade",), ceilings=False, resources=False,
                   seed=5)
    orchestrate.run(opts)
    doc = json.loads((tmp_path / "out" / "run.json").read_text())
    cells = {(r["scenario"], r["config"], r["repeat"]) for r in doc["results"]}
    assert {c for c in cells if c[0] == "latency-sporadic"} == {("latency-sporadic", "tuned", 1)}
    assert {c for c in cells if c[0] == "throughput-noop"} == {("throughput-noop", c, r) for c in ("defaults", "tuned")
                                                               for r in (1, 2)}
    (nr,) = doc["not_run"]
    assert nr["scenario"] == "latency-sporadic" and nr["why"] == "test budget"
    assert sorted(nr["cells_not_run"]) == ["r1 defaults facade", "r2 defaults facade", "r2 tuned facade"]
    # every session says where its time went; a measurement says it per phase
    assert set(doc["session_phases"]) == set(doc["session_seconds"])
    assert all(r["phase_s"] for r in doc["results"])


def test_a_session_with_nothing_to_run_is_not_started(tmp_path: Any) -> None:
    (spor,) = scenarios.load(["latency-sporadic"], "quick")
    only = dataclasses.replace(spor, n=5, gap_ms=0.0, configs=("tuned",), why="test")
    opts = Options(profile="quick", targets=(Target("memory"),), scenarios=(only,), repeats=1,
                   out_dir=str(tmp_path / "o"), modes=("facade",), ceilings=False, resources=False, seed=1)
    orchestrate.run(opts)
    doc = json.loads((tmp_path / "o" / "run.json").read_text())
    assert doc["order"] == ["r1 memory tuned facade"]


def test_a_restriction_without_a_reason_is_refused() -> None:
    doc = {"name": "x", "kind": "throughput", "task": "noop", "full": {"n": 10, "configs": ["tuned"]}}
    with pytest.raises(ValueError, match="say why"):
        scenarios.parse(doc, "full")
    doc["full"]["why"] = "budget"
    (sc,) = scenarios.parse(doc, "full")
    assert sc.runs_in("tuned", "native", 3) and not sc.runs_in("defaults", "native", 1)


def test_every_full_profile_restriction_carries_its_reason_and_caps_bound_the_slow_cells() -> None:
    full = scenarios.load(scenarios.PROFILES["full"].scenarios[:7], "full")
    for sc in full:
        assert not sc.restricted() or sc.why
        if sc.kind in ("throughput", "scale"):
            assert sc.max_drain_s > 0
        elif sc.kind.startswith("latency"):
            assert sc.max_wall_s > 0


def test_the_estimate_applies_the_caps_and_the_calibrated_rates(tmp_path: Any) -> None:
    doc = {"results": [{"scenario": "throughput-noop", "backend": "rq+redis", "config": "defaults", "mode": "native",
                        "throughput": 40.0, "enqueue_rate": 2000.0, "latency_ms": None},
                       {"scenario": "latency-sporadic", "backend": "rq+redis", "config": "defaults",
                        "mode": "native", "latency_ms": {"p50": 40.0}}],
           "session_phases": {"r1 rq+redis defaults native": {"boot": 2.0, "stop": 0.5, "cleanup": 0.1}}}
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(doc))
    cal = plan.load_calibration([str(path)])
    noop, spor = scenarios.load(["throughput-noop", "latency-sporadic"], "quick")
    big = dataclasses.replace(noop, n=100_000, max_drain_s=5.0)
    e = plan.scenario_seconds(big, cal, "rq+redis", "defaults", "native")
    assert e.seconds == pytest.approx(100_000 / 2000.0 + 5.0 + plan.FIXED_THROUGHPUT_S + 1.0)  # drain cut at the cap
    s = plan.scenario_seconds(dataclasses.replace(spor, n=10, gap_ms=10.0, max_wall_s=0), cal, "rq+redis",
                              "defaults", "native")
    assert s.seconds == pytest.approx(10 * (0.010 + 0.040 * 1.3) + plan.FIXED_LATENCY_S)
    order = orchestrate.session_order([Target("rq+redis")], ("defaults",), ("native",), 1, seed=1)
    p = plan.plan(order, (big,), cal, "quick")
    assert p["sessions"][0]["seconds"] == pytest.approx(2.6 + e.seconds, abs=0.1)


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path: Any) -> None:
    out = tmp_path / "dry"
    res = subprocess.run([sys.executable, "-m", "anytask", "bench", "run", "--profile", "full", "--dry-run",
                          "--backends", "memory,huey+sqlite", "--out", str(out)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert "estimated" in res.stdout and "not run: throughput-io" in res.stdout
    assert "r3 huey+sqlite tuned native" in res.stdout
    assert not out.exists()


def test_instrumentation_ab_alternates_arms_and_reports_the_median_ratio(tmp_path: Any) -> None:
    ab = instrumentation.measure(str(tmp_path / "ab"), n=200, rounds=3)
    assert len(ab["on_s"]) == len(ab["off_s"]) == 3
    ratios = [a / b - 1 for a, b in zip(ab["on_s"], ab["off_s"], strict=True)]
    assert ab["overhead"] == pytest.approx(statistics.median(ratios), abs=1e-3)
    assert ab["within_limit"] == (ab["overhead"] <= ab["limit"] == 0.03)
    assert not (tmp_path / "ab").exists()  # its stamp files are removed


def test_the_declared_pool_comes_from_the_adapters_describe_worker(tmp_path: Any) -> None:
    from anytask import WorkerOptions
    from anytask.facade.adapter import Adapter

    for target, pool in (("memory", "threads x2 in the producer process"),
                         ("huey+sqlite", "huey consumer, process workers x2")):
        d = FacadeDriver(_setup(str(tmp_path), target))
        try:
            info = d.describe()
            opts = WorkerOptions(concurrency=2, queues=(d.setup.iso.queue,), config="tuned")
            assert info["pool"] == pool == d.client.adapter.describe_worker(opts)["pool"]
            assert info["slots"] == 2 and info["config"] == "tuned"
        finally:
            d.close()
    # the contract's default derives what it can from the options
    d = FacadeDriver(_setup(str(tmp_path), "memory"))
    try:
        base = Adapter.describe_worker(d.client.adapter, WorkerOptions(concurrency=3, config="tuned", extra=("-x",)))
    finally:
        d.close()
    assert base["slots"] == 3 and base["config"] == "tuned" and base["knobs"] == {"extra": ["-x"]}


def test_scale_boots_once_and_adds_worker_processes(tmp_path: Any) -> None:
    (sc,) = scenarios.load(["scale"], "quick")
    opts = Options(profile="quick", targets=(Target("huey+sqlite"),), scenarios=(dataclasses.replace(sc, n=40),),
                   repeats=1, out_dir=str(tmp_path / "s"), configs=("tuned",), modes=("facade",), ceilings=False,
                   resources=False, seed=2)
    orchestrate.run(opts)
    doc = json.loads((tmp_path / "s" / "run.json").read_text())
    recs = sorted(doc["results"], key=lambda r: r["workers"])
    assert [r["workers"] for r in recs] == [1, 2, 4] and [r["slots"] for r in recs] == [1, 2, 4]
    for r in recs:
        assert r["completed"] == r["n"] == 40 and not [f for f in r["flags"] if f.startswith("gate-partial")]


def test_reliability_cells_are_estimated_from_measured_session_seconds_or_named(tmp_path: Any) -> None:
    path = tmp_path / "rel.json"
    path.write_text(json.dumps({"results": [], "session_seconds": {
        "reliability-kill rq+redis defaults facade": 7.0, "reliability-kill rq+redis reliable facade": 9.0,
        "r1 rq+redis tuned native": 3.0}}))
    cal = plan.load_calibration([str(path)])
    assert cal.own == {("reliability-kill", "rq+redis", "defaults"): 7.0,
                       ("reliability-kill", "rq+redis", "reliable"): 9.0}
    (kill,) = scenarios.load(["reliability-kill"], "full")
    order = orchestrate.session_order([Target("rq+redis"), Target("celery+redis")], ("tuned",), ("native",), 1, 1)
    p = plan.plan(order, (kill,), cal, "full")
    configs = kill.param("configs", ("defaults",))
    assert p["own_s"] == 16  # both of rq+redis's cells, measured
    assert sorted(p["not_estimated"]) == sorted(f"reliability-kill celery+redis {c}" for c in configs)
