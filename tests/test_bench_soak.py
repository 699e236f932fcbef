"""The soak scenario on a small N, for real: rq+redis workers, every task with a short result TTL.

Asserted: every submitted task ended, RSS was sampled and its growth computed, and the state records
and results of the tasks expired by their TTL so that the bench database's key count went back to
what it was before the first submit (anytask's result_ttl honoured end to end). RSS growth itself is
a measurement, not asserted.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest

from anytask.bench import results, scenarios, soak
from test_bench_reliability import _redis_or_skip, run_small


def test_end_counter_counts_whole_lines_only(tmp_path: Any) -> None:
    p = tmp_path / "w-1.stamps"
    p.write_bytes(b"S a 1.0\nE a 2.0\nS b 3.0\nE b 4")
    c = soak.EndCounter(str(tmp_path))
    assert (c.poll(), c.starts) == (1, 2)
    with open(p, "ab") as fh:
        fh.write(b".0\nE c 5.0\n")
    assert c.poll() == 3


def test_growth_is_measured_after_warm_up_under_load() -> None:
    samples = [{"ended": e, "worker_mb": mb} for e, mb in [(0, 10.0), (50, 40.0), (100, 41.0), (200, 60.0),
                                                               (300, 41.0), (500, 44.0), (700, 70.0), (800, 44.0),
                                                               (900, 44.0), (1000, 30.0)]]
    g = soak.growth(samples, "worker_mb", warm_ended=100, loaded_until=1000, window=3)
    # windows: (41, 60, 41) -> 41 and (70, 44, 44) -> 44; the spikes (a forked child) do not decide
    assert g is not None and g["baseline_mb"] == 41.0 and g["end_mb"] == 44.0 and g["peak_mb"] == 70.0
    assert g["growth"] == pytest.approx(44 / 41 - 1, abs=1e-4)
    assert soak.growth(samples[:1], "worker_mb", 0, 10) is None  # too few samples: no figure, not a guess


def test_soak_records_expire_and_redis_returns_to_its_baseline(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _redis_or_skip()
    sc = scenarios.load(["soak"], "quick")[0]
    params = {**dict(sc.params), "result_ttl": 2, "max_backlog": 300, "sample_s": 0.5}
    sc = dataclasses.replace(sc, n=1200, params=tuple(sorted(params.items())))
    doc = run_small(str(tmp_path), ("rq+redis",), (sc,), monkeypatch)
    assert results.validate(doc) == []
    (r,) = doc["results"]
    assert r["error"] is None, r["error"]
    d = r["details"]
    assert d["submitted"] == 1200 and d["ends"] == 1200 and r["lost"] == 0
    assert len(d["rss_samples"]) >= 2 and d["rss_worker"] is not None and d["rss_client"] is not None
    before, after, later = d["redis_before"], d["redis_after"], d["redis_after_ttl"]
    assert after["keys"] > before["keys"]  # the records were there after the last task ended...
    assert later["keys"] <= before["keys"] + 20, d  # ...and expired by their TTL
    assert d["redis_returned"] is True and "redis-not-returned" not in r["flags"]
    assert os.path.isdir(os.path.join(str(tmp_path), "work"))
