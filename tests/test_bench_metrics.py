"""The bench harness's pure measurement code: percentiles, completeness, efficiency flags, stamps."""

from __future__ import annotations

import os

import pytest

from anytask.bench import metrics, scenarios, stamps, summary
from anytask.bench.results import Record
from anytask.bench.stamps import StampReader, TaskStamps


def test_percentile_interpolates_between_closest_ranks() -> None:
    xs = list(range(1, 101))  # 1..100
    assert metrics.percentile(xs, 50) == pytest.approx(50.5)
    assert metrics.percentile(xs, 99) == pytest.approx(99.01)
    assert metrics.percentile(xs, 100) == 100
    assert metrics.percentile([7.0], 95) == 7.0
    assert metrics.percentile([], 50) is None
    assert metrics.percentile([3, 1, 2], 50) == 2  # unsorted input


def test_summary_ms_converts_seconds() -> None:
    s = metrics.summary_ms([0.001, 0.002, 0.003, 0.010])
    assert s["max"] == pytest.approx(10.0)
    assert s["p50"] == pytest.approx(2.5)


def _st(enq: float | None, starts: list[float], ends: list[float], seen: float | None = None) -> TaskStamps:
    return TaskStamps(enqueue=enq, starts=starts, ends=ends, seen=seen)


def test_completeness_counts_lost_duplicated_and_foreign_per_task_id() -> None:
    st = {"t-0": _st(0, [1], [2]), "t-1": _st(0, [1, 3], [2, 4]),  # t-1 ran twice
          "t-3": _st(None, [1], [2])}  # never enqueued by us
    c = metrics.completeness(["t-0", "t-1", "t-2"], st)  # t-2 never ran
    assert (c.n, c.completed, c.lost, c.duplicated, c.foreign) == (3, 2, 1, 1, 1)
    flags = metrics.flags(c, None, declared_work=False)
    assert "lost:1" in flags and "duplicated:1" in flags and "foreign:1" in flags


def test_drain_window_comes_from_stamps() -> None:
    st = {"a": _st(0, [10.0], [10.5]), "b": _st(0, [10.2], [11.0])}
    w = metrics.drain_window(["a", "b"], st)
    assert w is not None and (w.start, w.end) == (10.0, 11.0) and w.seconds == pytest.approx(1.0)


def test_efficiency_and_concurrency_miss_flag() -> None:
    # 100 tasks of 10 ms on 2 slots: ideal 0.5 s.
    good = metrics.efficiency(100, 0.010, 2, 0.55)
    assert good.ideal_s == pytest.approx(0.5) and good.efficiency == pytest.approx(0.5 / 0.55)
    assert good.implied_in_flight == pytest.approx(100 / 0.55 * 0.010)
    c = metrics.Completeness(100, 100, 0, 0, 0)
    assert not [f for f in metrics.flags(c, good, declared_work=True) if f.startswith("concurrency")]
    slow = metrics.efficiency(100, 0.010, 2, 1.0)  # only 1 task in flight on 2 slots: 50 % miss
    assert any(f.startswith("concurrency-miss") for f in metrics.flags(c, slow, declared_work=True))
    # a noop's in-flight is ~0 by nature: not flagged ...
    noop = metrics.efficiency(100, 0.00001, 2, 0.1)
    assert not metrics.flags(c, noop, declared_work=False)
    # ... but more in flight than slots (an undeclared extra pool) is, whatever the task
    over = metrics.efficiency(100, 0.010, 2, 0.25)  # 4 in flight on 2 slots
    assert any(f.startswith("concurrency-miss") for f in metrics.flags(c, over, declared_work=False))


def test_instrumentation_flag_over_three_percent() -> None:
    c = metrics.Completeness(1, 1, 0, 0, 0)
    assert metrics.flags(c, None, declared_work=False, instrumentation_fraction=0.01) == []
    assert metrics.flags(c, None, declared_work=False, instrumentation_fraction=0.05) == ["instrumentation:5.0%"]


def test_latency_is_decomposed_from_the_four_stamps() -> None:
    st = {"x-0": _st(1.000, [1.002], [1.003], 1.010), "x-1": _st(2.000, [2.001], [2.002], 2.004),
          "x-2": _st(3.000, [], [], None)}  # lost: left out of the latency, counted by completeness
    parts = metrics.latency_parts(["x-0", "x-1", "x-2"], st)
    assert parts["total"] == pytest.approx([0.010, 0.004])
    assert parts["enqueue_to_start"] == pytest.approx([0.002, 0.001])
    assert parts["end_to_result"] == pytest.approx([0.007, 0.002])
    lat = metrics.latency_ms(parts)
    assert lat["max"] == pytest.approx(10.0) and lat["enqueue_to_start"]["max"] == pytest.approx(2.0)


def test_stamp_reader_merges_processes_and_waits_for_complete_lines(tmp_path: object) -> None:
    d = str(tmp_path)
    with open(os.path.join(d, "w-1.stamps"), "w") as fh:
        fh.write("S a 1.0\nE a 2.0\nS b 1.5\nE b 2.")  # last line still being written
    with open(os.path.join(d, "w-2.stamps"), "w") as fh:
        fh.write("E a 3.0\n")  # a second completion of a, by another process
    r = StampReader(d)
    r.poll()
    assert r.stamps["a"].ends == [2.0, 3.0] or r.stamps["a"].ends == [3.0, 2.0]
    assert r.stamps["b"].ends == []
    with open(os.path.join(d, "w-1.stamps"), "a") as fh:
        fh.write("5\n")
    r.poll()
    assert r.stamps["b"].ends == [2.5]


def test_stamps_go_to_a_per_process_file_and_cost_is_measured(tmp_path: object) -> None:
    d = str(tmp_path)
    stamps.configure(d)
    try:
        stamps.stamp("S", "k")
        stamps.stamp("E", "k")
    finally:
        stamps.configure(None)
    assert os.listdir(d) == [f"w-{os.getpid()}.stamps"]
    r = StampReader(d)
    r.poll()
    assert len(r.stamps["k"].starts) == 1 and len(r.stamps["k"].ends) == 1
    stamps.stamp("S", "ignored")  # outside a bench run: a no-op
    assert os.listdir(d) == [f"w-{os.getpid()}.stamps"]
    r.poll()
    assert "ignored" not in r.stamps
    cost = stamps.instrumentation_cost(os.path.join(d, "cost"), n=2000)
    assert 0 < cost < 0.001  # seconds per start+end pair


def test_scenario_files_parse_for_both_profiles() -> None:
    for profile in ("quick", "full"):
        names = list(scenarios.PROFILES[profile].scenarios)
        scs = scenarios.load(names, profile)
        by = {s.name: s for s in scs}
        if profile == "quick":
            assert by["throughput-noop"].n == 2000  # the quick N
        elif by["throughput-noop"].n < 20000:  # below the full N: the file must say why
            text = (scenarios.scenarios_dir() / "throughput-noop.toml").read_text()
            assert "20000" in text and "docs/methodology.md" in text
        assert by["latency-sporadic"].n >= 200
    full = {s.name: s for s in scenarios.load(["payload", "throughput-io"], "full")}
    assert full["payload-1KiB"].payload_bytes == 1024 and full["payload-64KiB"].payload_bytes == 65536
    assert full["throughput-io"].work_ms == 10 and full["throughput-io"].declared_work
    with pytest.raises(ValueError, match="unknown scenario"):
        scenarios.load(["nope"], "quick")


def test_summary_takes_median_min_max_and_facade_native_ratio() -> None:
    def rec(mode: str, rep: int, tput: float) -> Record:
        return Record("throughput-noop", "rq+redis", "tuned", mode, rep, 10, completed=10, throughput=tput, slots=2)

    rows = summary.aggregate([rec("native", 1, 100.0), rec("native", 2, 300.0), rec("native", 3, 200.0),
                              rec("facade", 1, 100.0)], {"redis-py": {"throughput": 1000.0}})
    native = next(r for r in rows if r["mode"] == "native")
    assert native["throughput"] == {"median": 200.0, "min": 100.0, "max": 300.0}
    facade = next(r for r in rows if r["mode"] == "facade")
    assert facade["facade_vs_native_throughput"] == pytest.approx(0.5)
    assert facade["of_floor_throughput"] == pytest.approx(0.1)
