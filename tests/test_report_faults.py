"""The report's reliability and soak tables, from a small real run (huey+sqlite workers killed with
SIGKILL, a soak on huey+sqlite, memory:// as not applicable), and their absence from a run without them."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest

from anytask.bench import scenarios
from anytask.report import data as D
from anytask.report import faults, fixture, write_report
from test_bench_reliability import run_small

pytest.importorskip("matplotlib")


def _sc(name: str, n: int, **params: Any) -> scenarios.Scenario:
    sc = scenarios.load([name], "quick")[0]
    return dataclasses.replace(sc, n=n, params=tuple(sorted({**dict(sc.params), **params}.items())))


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("faults")
    mp = pytest.MonkeyPatch()
    try:
        scs = (_sc("reliability-kill", 24, deadline_s=4.0, configs=("defaults",)),
               _sc("soak", 1500, result_ttl=1, sample_s=0.2, max_backlog=300))
        doc = run_small(str(tmp), ("huey+sqlite", "memory"), scs, mp)
    finally:
        mp.undo()
    write_report(str(tmp))
    return tmp, doc


def test_reliability_table_has_a_row_per_record_next_to_the_declared_promise(real_run: Any) -> None:
    tmp, doc = real_run
    md = (tmp / "report.md").read_text()
    assert "## Reliability under faults" in md and "## Soak" in md
    kill = next(r for r in doc["results"] if r["scenario"] == "reliability-kill" and r["backend"] == "huey+sqlite")
    assert kill["error"] is None, kill["error"]
    rd = D.load(str(tmp))
    rows = faults.reliability_rows(rd)
    assert [(r[0], r[2], r[3]) for r in rows] == [("huey+sqlite", "kill", "defaults"), ("memory", "kill", "defaults")]
    huey, mem = rows
    assert kill["details"]["delivery"].startswith(huey[1]) and huey[1] == "at-most-once"  # Huey's declaration
    assert huey[4] == ("yes" if kill["lost"] == 0 else "NO")
    assert huey[5] == f"{kill['lost']} / 24" and huey[6] == str(kill["duplicated"])
    assert mem[4] == "not applicable" and "no worker process" in mem[9]
    # the backend x (fault, config) matrix in the markdown carries the same figures
    heads, matrix = faults.reliability_matrix(rd)
    assert heads == ["kill / defaults"]
    cell = f"{huey[4]}: {kill['lost']} lost, {kill['duplicated']} dup"
    assert matrix == [["huey+sqlite", "at-most-once", cell], ["memory", "at-most-once", "n/a"]]
    assert f"| huey+sqlite | at-most-once | {cell} |" in md
    assert ("huey+sqlite / defaults", kill["details"]["delivery"]) in faults.declarations(rd)


def test_soak_table_shows_rss_growth_and_tasks(real_run: Any) -> None:
    tmp, doc = real_run
    soak = next(r for r in doc["results"] if r["scenario"] == "soak" and r["backend"] == "huey+sqlite")
    assert soak["error"] is None, soak["error"]
    assert soak["details"]["ends"] == soak["details"]["submitted"] == 1500
    (row,) = [r for r in faults.soak_rows(D.load(str(tmp))) if r[0] == "huey+sqlite"]
    assert row[1] == "1500 / 1500" and row[6] == "no Redis"  # huey+sqlite keeps its records in SQLite
    assert "MB →" in row[3] and "%" in row[3]
    html = (tmp / "report.html").read_text()
    assert 'id="soak"' in html or "Soak</h2>" in html


def test_fault_data_is_escaped(real_run: Any, tmp_path: Any) -> None:
    src, doc = real_run
    doc = copy.deepcopy(doc)
    evil = "<script>alert(1)</script>|x"
    for r in doc["results"]:
        if r["scenario"] == "reliability-kill" and r["backend"] == "memory":
            r["error"] = evil
    fixture.write(str(tmp_path), {**fixture.run_doc(repeats=1), "results": doc["results"]})
    write_report(str(tmp_path))
    html = (tmp_path / "report.html").read_text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_run_without_fault_records_gets_no_fault_section(tmp_path: Any) -> None:
    fixture.write(str(tmp_path))
    write_report(str(tmp_path))
    md = (tmp_path / "report.md").read_text()
    assert "Reliability under faults" not in md and "## Soak" not in md
    run = json.loads((tmp_path / "run.json").read_text())
    assert faults.blocks(D.from_documents(run), "docs/methodology.md") == []
