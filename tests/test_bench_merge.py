"""`anytask bench merge` (a later run's records added to a run directory, with provenance), the soak
in the full profile and its plan estimate, and the report's merged / not_run / timer appendix.
Synthetic run.json files (anytask/report/fixture.py); nothing is measured."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest

from anytask.bench import merge as M
from anytask.bench import orchestrate, plan, reliability, scenarios, soak
from anytask.bench.targets import Target
from anytask.cli import main
from anytask.report import fixture

NOTE = "soak measured separately (issue 7)"


# ------------------------------------------------------------------------------ synthetic runs
def _dir_doc() -> dict[str, Any]:
    """A small full-like run: two backends' throughput-noop over two repeats, one restricted scenario."""
    doc = fixture.run_doc(repeats=2)
    keep = {"rq+redis", "celery+redis"}
    doc["results"] = [r for r in doc["results"] if r["backend"] in keep
                      and r["scenario"] in ("throughput-noop", "latency-sporadic")]
    doc["configs"] = {k: v for k, v in doc["configs"].items() if k.split("/")[0] in keep}
    doc["profile"], doc["run_id"] = "full", "dir00001"
    doc["not_run"] = [{"scenario": "throughput-io", "configs": ["tuned"], "modes": "all", "repeats": 1,
                       "cells_not_run": ["r1 defaults native", "r2 tuned facade"],
                       "why": "budget: secondary scenario in the tuned configuration only"}]
    doc["order"] = ["r1 rq+redis defaults native", "r1 celery+redis tuned facade"]
    doc["session_seconds"] = {"r1 rq+redis defaults native": 9.5, "r1 celery+redis tuned facade": 4.25,
                              "reliability-kill rq+redis defaults facade": 7.0}
    doc["session_phases"] = {"r1 rq+redis defaults native": {"isolate": 0.5, "boot": 2.0, "throughput-noop": 6.0,
                                                             "stop": 0.5, "cleanup": 0.5},
                             "r1 celery+redis tuned facade": {"boot": 1.25, "throughput-noop": 3.0}}
    for r in doc["results"]:
        if r["scenario"] == "throughput-noop":
            r["phase_s"] = {"gates": 0.25, "enqueue": 1.0, "drain": 2.0, "check": 0.25}
    return doc


def _soak_record(backend: str, **extra: Any) -> dict[str, Any]:
    rec = fixture.record("soak", backend, "defaults", "facade", throughput=500.0, n=100000, rss=150.0,
                         details={"submitted": 100000, "ends": 100000, "redis_returned": True}, **extra)
    rec["raw"] = None  # soak records keep no per-task stamps
    return rec


def _src_doc(run_id: str = "soak0001") -> dict[str, Any]:
    """A later run: the soak on two backends and a re-measured throughput-noop of rq+redis (with raw)."""
    noop = fixture.record("throughput-noop", "rq+redis", "tuned", "native", 1, throughput=77.0)
    return {"schema": 1, "environment": {"git_commit": "abc1234def", "python": "3.11.7",
                                         "packages": {"celery": "5.7.0", "rq": "3.1.0"}, "cpu_count": 2},
            "configs": {"rq+redis/defaults/facade/soak": {"mode": "facade", "pool": "fork x2"},
                        "rq+redis/tuned/native": {"mode": "native", "pool": "something else"}},
            "ceilings": {}, "results": [_soak_record("rq+redis"), _soak_record("huey+redis"), noop],
            "summary": [{"scenario": "soak", "backend": "rq+redis", "config": "defaults", "mode": "facade",
                         "workers": 1, "repeats": 1}],
            "profile": "soak", "run_id": run_id, "seed": 3, "slots": 2, "repeats": 1, "scenarios": ["soak"],
            "order": [], "not_run": [], "interrupted": False, "started": 1_700_100_000.0,
            "finished": 1_700_100_700.0,
            "session_seconds": {"soak rq+redis defaults facade": 300.0, "soak huey+redis defaults facade": 100.0,
                                "r1 rq+redis tuned native": 5.0},
            "session_phases": {"r1 rq+redis tuned native": {"boot": 1.0, "throughput-noop": 3.0}}}


def _write(directory: Path, doc: dict[str, Any], raw_line: bytes = b'{"id": "x"}\n') -> Path:
    fixture.write(str(directory), doc, features=False)
    for rec in doc["results"]:  # each raw file says which run wrote it
        if rec.get("raw"):
            with gzip.GzipFile(directory / rec["raw"], "wb", mtime=0) as fh:
                fh.write(raw_line)
    return directory


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    dst = _write(tmp_path / "ref", _dir_doc(), b'{"run": "dir"}\n')
    src = _write(tmp_path / "soak", _src_doc(), b'{"run": "src"}\n')
    return src, dst


def _load(d: Path) -> dict[str, Any]:
    return json.loads((d / "run.json").read_text())


# ------------------------------------------------------------------------------ merge
def test_merge_adds_the_scenarios_of_src_replaces_the_same_ones_and_keeps_provenance(dirs: tuple[Path, Path]) -> None:
    src, dst = dirs
    before = _load(dst)
    old_noop_raw = {r["raw"] for r in before["results"] if r["scenario"] == "throughput-noop"}
    res = M.merge(str(src), str(dst), NOTE)
    doc = _load(dst)
    assert res.scenarios == ["soak", "throughput-noop"] and res.added == 3
    assert res.replaced == sum(r["scenario"] == "throughput-noop" for r in before["results"])
    # DIR's records of the merged scenarios are gone; the others untouched, in their order
    assert [r for r in doc["results"] if r["scenario"] == "latency-sporadic"] == \
        [r for r in before["results"] if r["scenario"] == "latency-sporadic"]
    noop = [r for r in doc["results"] if r["scenario"] == "throughput-noop"]
    assert len(noop) == 1 and noop[0]["throughput"] == 77.0
    assert {(r["scenario"], r["backend"]) for r in doc["results"] if r["scenario"] == "soak"} == \
        {("soak", "rq+redis"), ("soak", "huey+redis")}
    # raw: SRC's file copied over, DIR's files of the dropped records that nothing names removed
    with gzip.open(dst / noop[0]["raw"], "rb") as fh:
        assert fh.read() == b'{"run": "src"}\n'
    assert res.raw_copied == 1 and res.raw_removed == len(old_noop_raw - {noop[0]["raw"]}) > 0
    assert not any((dst / p).exists() for p in old_noop_raw - {noop[0]["raw"]})
    assert all((dst / r["raw"]).exists() for r in doc["results"] if r.get("raw"))
    # configs: SRC's new key added, DIR's own key kept as DIR declared it
    assert doc["configs"]["rq+redis/defaults/facade/soak"]["pool"] == "fork x2"
    assert doc["configs"]["rq+redis/tuned/native"] == before["configs"]["rq+redis/tuned/native"]
    assert res.configs_differing == ["rq+redis/tuned/native"]
    # DIR keeps its own run identity and times
    for k in ("started", "finished", "run_id", "profile", "environment", "session_phases"):
        assert doc[k] == before[k]
    # own-session timers of the merged scenarios join DIR's; SRC's regular sessions stay in the entry
    assert doc["session_seconds"]["soak rq+redis defaults facade"] == 300.0
    assert "r1 rq+redis tuned native" not in doc["session_seconds"]
    assert doc["session_seconds"]["reliability-kill rq+redis defaults facade"] == 7.0
    (entry,) = doc["merged"]
    assert entry["run_id"] == "soak0001" and entry["profile"] == "soak" and entry["why"] == NOTE
    assert entry["started"] == 1_700_100_000.0 and entry["finished"] == 1_700_100_700.0
    assert entry["scenarios"] == ["soak", "throughput-noop"] and entry["records"] == 3
    assert entry["environment"]["git_commit"] == "abc1234def"
    assert entry["session_seconds"] == {"r1 rq+redis tuned native": 5.0}
    assert [s["scenario"] for s in doc["summary"]].count("soak") == 1
    from anytask.bench import results

    assert results.validate(doc) == []


def test_merging_twice_changes_nothing(dirs: tuple[Path, Path]) -> None:
    src, dst = dirs
    M.merge(str(src), str(dst), NOTE)
    once = (dst / "run.json").read_bytes()
    files = sorted(p.relative_to(dst) for p in dst.rglob("*"))
    res = M.merge(str(src), str(dst), NOTE)
    assert (dst / "run.json").read_bytes() == once
    assert sorted(p.relative_to(dst) for p in dst.rglob("*")) == files
    assert res.replaced == 3 and res.raw_removed == 0


def test_a_later_merge_of_the_same_scenario_takes_it_from_the_earlier_entry(dirs: tuple[Path, Path],
                                                                            tmp_path: Path) -> None:
    src, dst = dirs
    M.merge(str(src), str(dst), NOTE)
    again = _src_doc("soak0002")
    again["results"] = again["results"][:1]  # only the soak of rq+redis
    again["session_seconds"] = {"soak rq+redis defaults facade": 250.0}
    src2 = _write(tmp_path / "soak2", again)
    M.merge(str(src2), str(dst), "soak again after the fix")
    doc = _load(dst)
    assert [(e["run_id"], e["scenarios"]) for e in doc["merged"]] == [("soak0001", ["throughput-noop"]),
                                                                       ("soak0002", ["soak"])]
    assert [r["backend"] for r in doc["results"] if r["scenario"] == "soak"] == ["rq+redis"]
    assert "soak huey+redis defaults facade" not in doc["session_seconds"]  # the earlier run's timer went too
    assert doc["session_seconds"]["soak rq+redis defaults facade"] == 250.0


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(schema=2), "schema differs"),
    (lambda d: d.update(results=[]), "ran no scenario"),
    (lambda d: d.update(run_id="dir00001"), "nothing to merge"),
    (lambda d: d["results"][0].update(mode="sideways"), "does not follow docs/run-json.md"),
])
def test_merge_refuses_with_a_message_naming_the_problem(dirs: tuple[Path, Path], change: Any, message: str) -> None:
    src, dst = dirs
    doc = _load(src)
    change(doc)
    (src / "run.json").write_text(json.dumps(doc))
    before = (dst / "run.json").read_bytes()
    with pytest.raises(M.MergeError, match=message):
        M.merge(str(src), str(dst), NOTE)
    assert (dst / "run.json").read_bytes() == before  # nothing written


def test_merge_refuses_without_a_note_a_run_json_or_into_itself(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    src, dst = dirs
    with pytest.raises(M.MergeError, match="--note"):
        M.merge(str(src), str(dst), "  ")
    with pytest.raises(M.MergeError, match="no run.json"):
        M.merge(str(tmp_path / "nowhere"), str(dst), NOTE)
    with pytest.raises(M.MergeError, match="same directory"):
        M.merge(str(dst), str(dst), NOTE)


def test_the_merge_command(dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    src, dst = dirs
    assert main(["bench", "merge", str(src), "--into", str(dst), "--note", NOTE]) == 0
    out = capsys.readouterr().out
    assert "merged 3 records of soak, throughput-noop" in out and f"anytask report {dst}" in out
    doc = _load(src)
    doc["schema"] = 7
    (src / "run.json").write_text(json.dumps(doc))
    assert main(["bench", "merge", str(src), "--into", str(dst), "--note", NOTE]) == 2
    assert "schema differs" in capsys.readouterr().err


# ------------------------------------------------------------------------------ report
def test_the_report_shows_merged_records_cells_not_run_and_the_harness_timers(dirs: tuple[Path, Path]) -> None:
    pytest.importorskip("matplotlib")
    from anytask.report import write_report

    src, dst = dirs
    write_report(str(dst), formats=("md",))
    plain = (dst / "report.md").read_text()
    assert "Merged records" not in plain and "### Merged runs" not in plain
    assert "### Cells not run by design" in plain and "budget: secondary scenario in the tuned" in plain
    assert "r2 tuned facade" in plain
    assert "### Harness timers" in plain
    assert "| `boot` | 2 | 3.2 s |" in plain  # 2.0 + 1.25 over two sessions
    # 16 throughput-noop records (2 backends x 2 configs x 2 modes x 2 repeats), phase_s summed
    assert "| `throughput-noop` | 16 | gates 4.0 s; enqueue 16.0 s; drain 32.0 s; check 4.0 s |" in plain
    M.merge(str(src), str(dst), NOTE)
    write_report(str(dst), formats=("md", "html"))
    md = (dst / "report.md").read_text()
    summary = md.split("## Charts")[0]
    assert "**Merged records:**" in summary and "`soak0001`" in summary and NOTE in summary
    assert "2023-11-16" in summary  # the merged run's start, 1_700_100_000 UTC
    appendix = md.split("### Merged runs")[1]
    assert "`abc1234d" in appendix and "rq 3.1.0 (here 3.0.0)" in appendix
    assert "| `soak` (workers of its own) | 2 | 400.0 s |" in md
    html = (dst / "report.html").read_text()
    assert 'id="merged"' in html and NOTE in html
    again = dst / "report.md"
    first = again.read_bytes()
    write_report(str(dst), formats=("md",))
    assert again.read_bytes() == first  # deterministic


# ------------------------------------------------------------------------------ profile and plan
def test_the_full_profile_runs_the_soak_after_the_reliability_scenarios() -> None:
    full = scenarios.PROFILES["full"].scenarios
    assert "soak" in full and full.index("soak") > full.index("reliability-restart")
    (sc,) = scenarios.load(["soak"], "full")
    assert sc.kind in scenarios.OWN_SESSION_KINDS and sc.n == 100000 and sc.param("max_s") == 600


def test_own_session_scenarios_alone_run_in_facade_mode_and_their_own_configs() -> None:
    (sk,) = scenarios.load(["soak"], "full")
    (kill,) = scenarios.load(["reliability-kill"], "full")
    assert scenarios.own_only_cells([sk]) == (("defaults",), ("facade",))
    assert scenarios.own_configs(sk) == (soak.CONFIG,)  # what soak.py runs
    assert scenarios.own_configs(kill) == reliability._configs(kill)  # what reliability.py runs
    assert scenarios.own_only_cells([kill, sk]) == (reliability._configs(kill), ("facade",))
    noop = scenarios.load(["throughput-noop"], "full")
    assert scenarios.own_only_cells([*noop, sk]) is None  # a regular scenario: the profile's cells


def test_full_profile_soak_alone_is_planned_as_the_soak_profile_runs_it(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    from anytask.bench import cli

    seen: list[Any] = []
    monkeypatch.setattr(cli, "_dry_run", lambda opts, calibration: seen.append(opts) or 0)
    for profile in ("full", "soak"):
        assert main(["bench", "run", "--profile", profile, "--scenarios", "soak", "--dry-run", "--backends",
                     "rq+redis", "--out", str(tmp_path / "o")]) == 0
    full, soak_profile = seen
    assert [s.name for s in full.scenarios] == ["soak"] and full.scenarios[0].n == 100000
    for o in (full, soak_profile):
        assert (o.configs, o.modes, o.repeats) == (("defaults",), ("facade",), 1)
    assert main(["bench", "run", "--profile", "full", "--dry-run", "--backends", "rq+redis"]) == 0
    assert (seen[-1].configs, seen[-1].modes, seen[-1].repeats) == (("defaults", "tuned"), ("native", "facade"), 3)
    assert "soak" in [s.name for s in seen[-1].scenarios]
    assert not (tmp_path / "o").exists()


def test_the_plan_estimates_the_soak_at_its_cap_or_from_a_calibration_run(tmp_path: Path) -> None:
    (sk,) = scenarios.load(["soak"], "full")
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"results": []}))
    order = orchestrate.session_order([Target("rq+redis"), Target("memory")], ("defaults",), ("facade",), 1, 1)
    p = plan.plan(order, (sk,), plan.load_calibration([str(empty)]), "full")
    boot = plan.DEFAULTS["boot_s"] + plan.DEFAULTS["stop_s"] + plan.DEFAULTS["cleanup_s"]
    assert p["own_s"] == round(600 + boot)  # rq+redis at its cap; memory: not applicable, nothing runs
    assert p["estimate_s"] == round(plan.RUN_FIXED_S["full"] + 600 + boot)
    assert p["upper_s"] > p["estimate_s"] and p["not_estimated"] == []
    assert {c["session"]: c["source"] for c in p["own"]} == {"soak rq+redis defaults facade": "cap",
                                                              "soak memory defaults facade": "not applicable"}
    text = plan.render(p, [])
    assert "max_s = 600 s" in text and "after the sessions: soak" in text
    cal = tmp_path / "soak.json"
    cal.write_text(json.dumps({"results": [], "session_seconds": {"soak rq+redis defaults facade": 210.0}}))
    p2 = plan.plan(order, (sk,), plan.load_calibration([str(cal)]), "full")
    assert p2["own_s"] == 210 and "max_s" not in plan.render(p2, [])


def test_a_merged_soak_calibrates_the_next_plan(dirs: tuple[Path, Path]) -> None:
    src, dst = dirs
    M.merge(str(src), str(dst), NOTE)
    cal = plan.load_calibration([os.path.join(dst, "run.json")])
    assert cal.own[("soak", "rq+redis", "defaults")] == 300.0
