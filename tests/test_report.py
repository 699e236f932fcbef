"""anytask report: claim rules on hand-made numbers, survey.toml coverage, deterministic output, escaping."""

from __future__ import annotations

import base64
import filecmp
import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest

from anytask.report import claims as C
from anytask.report import data as D
from anytask.report import fixture, write_report
from anytask.report import verdicts as V

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
_SURVEY_NAME = "000_858ee4e4d6039a38.txt"
# shared/ lies beside the project's clone (here and under CI); /work/shared is this workplace's copy
SURVEY = next((p for p in (ROOT.parent / "shared" / "survey" / _SURVEY_NAME, Path("/work/shared/survey") / _SURVEY_NAME)
               if p.exists()), ROOT.parent / "shared" / "survey" / _SURVEY_NAME)
REFERENCE = ROOT / "results" / "reference"
LIBS = ["celery", "rq", "dramatiq", "huey", "taskiq"]
NAMES = {"Celery": "celery", "RQ": "rq", "Dramatiq": "dramatiq", "Huey": "huey", "TaskiQ": "taskiq"}
RANK = {"levels": {"Very Low": 0, "Low": 1, "Low-Medium": 1.5, "Medium": 2, "Medium-High": 2.5, "High": 3},
        "tie": 0.10, "same": 0.50, "confirmed": 0.75, "partly": 0.50, "min_others": 2}


# ------------------------------------------------------------------------------------------ rules
@pytest.mark.parametrize("text,expected", [("1000+", (1000, math.inf)), ("500-800", (500, 800)), ("800", (800, 800)),
                                           ("10-50ms", (10, 50)), ("1,200", (1200, 1200))])
def test_parse_claimed(text, expected):
    assert C.parse_claimed(text) == expected


def test_parse_claimed_rejects_words():
    with pytest.raises(ValueError):
        C.parse_claimed("Variable")


@pytest.mark.parametrize("claimed,value,higher,verdict", [
    ("800", 800, True, C.CONFIRMED),
    ("800", 1000, True, C.CONFIRMED),      # +25 % is the edge
    ("800", 599, True, C.REFUTED),         # below -25 %: worse than claimed
    ("800", 1001, True, C.PARTLY),         # better than claimed: the survey understates
    ("1000+", 750, True, C.CONFIRMED),     # a minimum: -25 % tolerance, no upper bound
    ("1000+", 50000, True, C.CONFIRMED),
    ("1000+", 749, True, C.REFUTED),
    ("500-800", 450, True, C.CONFIRMED),
    ("500-800", 1001, True, C.PARTLY),
    ("10-50ms", 30, False, C.CONFIRMED),   # latency: lower is better
    ("10-50ms", 2, False, C.PARTLY),
    ("10-50ms", 70, False, C.REFUTED),
])
def test_decide_numeric(claimed, value, higher, verdict):
    assert C.decide_numeric(claimed, value, higher, 0.25).verdict == verdict


def test_decide_numeric_not_measured():
    assert C.decide_numeric("800", None, True, 0.25).verdict == C.NOT_COMPARABLE


def test_decide_rank_agrees_and_disagrees():
    claimed = {"celery": "High", "rq": "Low", "dramatiq": "Medium", "huey": "Very Low", "taskiq": "Medium"}
    good = {"celery": 300.0, "rq": 80.0, "dramatiq": 150.0, "huey": 40.0, "taskiq": 160.0}
    for lib in claimed:
        assert C.decide_rank(lib, claimed, good, RANK).verdict == C.CONFIRMED, lib
    reversed_ = {"celery": 40.0, "rq": 160.0, "dramatiq": 150.0, "huey": 300.0, "taskiq": 80.0}
    assert C.decide_rank("celery", claimed, reversed_, RANK).verdict == C.REFUTED
    assert C.decide_rank("huey", claimed, reversed_, RANK).verdict == C.REFUTED


def test_decide_rank_ties_and_too_few():
    claimed = {"a": "High", "b": "Low", "c": "Low"}
    assert C.decide_rank("a", claimed, {"a": 100.0, "b": 95.0, "c": 96.0}, RANK).verdict == C.PARTLY  # ties 0.5
    assert C.decide_rank("a", claimed, {"a": 100.0, "b": 10.0}, RANK).verdict == C.NOT_COMPARABLE
    assert C.decide_rank("a", claimed, {"b": 1.0, "c": 2.0}, RANK).verdict == C.NOT_COMPARABLE


def test_decide_spread():
    p = {"confirmed": 1.5, "partly": 1.25}
    assert C.decide_spread({"x+redis": 10.0, "x+amqp": 20.0}, p).verdict == C.CONFIRMED
    assert C.decide_spread({"x+redis": 10.0, "x+amqp": 13.0}, p).verdict == C.PARTLY
    assert C.decide_spread({"x+redis": 10.0, "x+amqp": 11.0}, p).verdict == C.REFUTED
    assert C.decide_spread({"x+redis": 10.0}, p).verdict == C.NOT_COMPARABLE


def test_decide_lowest():
    p = {"min_libraries": 3, "tie": 0.10}
    assert C.decide_lowest("huey", {"huey": 1.0, "rq": 2.0, "celery": 3.0}, p).verdict == C.CONFIRMED
    assert C.decide_lowest("huey", {"huey": 2.0, "rq": 1.0, "celery": 3.0}, p).verdict == C.PARTLY
    assert C.decide_lowest("huey", {"huey": 1.0, "rq": 1.05, "celery": 3.0}, p).verdict == C.PARTLY  # tied
    assert C.decide_lowest("huey", {"huey": 3.0, "rq": 1.0, "celery": 2.0}, p).verdict == C.REFUTED
    assert C.decide_lowest("huey", {"huey": 3.0, "rq": 1.0}, p).verdict == C.NOT_COMPARABLE


def test_decide_order():
    vals = {"rq": 2.0, "taskiq": 3.0, "dramatiq": 5.0}
    assert C.decide_order(["rq", "taskiq", "dramatiq"], vals, higher_first=False).verdict == C.CONFIRMED
    assert C.decide_order(["rq", "dramatiq", "taskiq"], vals, higher_first=False).verdict == C.PARTLY
    assert C.decide_order(["dramatiq", "taskiq", "rq"], vals, higher_first=False).verdict == C.REFUTED
    assert C.decide_order(["dramatiq", "taskiq", "rq"], vals, higher_first=True).verdict == C.CONFIRMED
    assert C.decide_order(["rq", "celery"], vals, higher_first=True).verdict == C.NOT_COMPARABLE


def test_decide_feature():
    p = {"values": {"yes": 2, "partial": 1, "plugin": 1, "no": 0}}
    assert C.decide_feature("yes", {"f": "yes"}, p).verdict == C.CONFIRMED
    assert C.decide_feature("yes", {"f": "plugin"}, p).verdict == C.PARTLY
    assert C.decide_feature("yes", {"f": "no"}, p).verdict == C.REFUTED
    assert C.decide_feature("no", {"f": "yes"}, p).verdict == C.REFUTED
    assert C.decide_feature("no", {"f": "partial"}, p).verdict == C.PARTLY
    assert C.decide_feature("yes", {"f": "unknown"}, p).verdict == C.NOT_COMPARABLE
    assert C.decide_feature("yes", {}, p).verdict == C.NOT_COMPARABLE
    # a row tested by two probes (Scheduling: delay + periodic)
    assert C.decide_feature("yes", {"d": "yes", "p": "yes"}, p).verdict == C.CONFIRMED
    assert C.decide_feature("yes", {"d": "yes", "p": "plugin"}, p).verdict == C.PARTLY
    assert C.decide_feature("yes", {"d": "no", "p": "no"}, p).verdict == C.REFUTED
    # Configuration words: Simple/Medium/Complex = yes/partial/no
    assert C.decide_feature("Complex", {"c": "no"}, p).verdict == C.CONFIRMED
    assert C.decide_feature("Medium", {"c": "yes"}, p).verdict == C.PARTLY
    assert C.decide_feature("Complex", {"c": "yes"}, p).verdict == C.REFUTED


def test_decide_probe():
    assert C.decide_probe(True, "e").verdict == C.CONFIRMED
    assert C.decide_probe(False, "e").verdict == C.REFUTED
    assert C.decide_probe(None, "e").verdict == C.NOT_COMPARABLE


# ------------------------------------------------------------------------- rules on hand-made records
def _run(records):
    doc = fixture.run_doc(repeats=1)
    doc["results"] = records
    return D.from_documents(doc)


def test_throughput_claim_uses_tuned_native_median_per_core_and_best_broker():
    recs = [fixture.record("throughput-noop", "rq+redis", "tuned", "native", r, throughput=t)
            for r, t in ((1, 1500.0), (2, 1600.0), (3, 9000.0))]  # median 1600, 2 slots on 2 cores -> 800/core
    recs += [fixture.record("throughput-noop", "rq+redis", "defaults", "native", 1, throughput=10.0),
             fixture.record("throughput-noop", "rq+redis", "tuned", "facade", 1, throughput=10.0)]
    vs = {v.claim.id: v for v in V.evaluate(C.load(), _run(recs))}
    v = vs["throughput.rq.simple"]
    assert v.verdict == C.CONFIRMED and v.value == pytest.approx(800.0)
    assert "per core" in v.reason and "hardware" in v.reason
    assert [href for _, href in v.links] == [f"raw/throughput-noop__rq-redis__tuned__native__r{i}.jsonl.gz"
                                             for i in (1, 2, 3)]
    # the library's best broker decides; both are in the evidence
    recs = [fixture.record("throughput-noop", "celery+redis", "tuned", "native", throughput=400.0),
            fixture.record("throughput-noop", "celery+amqp", "tuned", "native", throughput=2400.0)]
    v = {v.claim.id: v for v in V.evaluate(C.load(), _run(recs))}["throughput.celery.simple"]
    assert v.verdict == C.CONFIRMED and "celery+amqp" in v.measured and len(v.evidence) == 2


def test_missing_scenario_and_missing_library_are_not_comparable():
    recs = [fixture.record("throughput-noop", "rq+redis", "tuned", "native", throughput=1600.0)]
    vs = {v.claim.id: v for v in V.evaluate(C.load(), _run(recs))}
    assert vs["throughput.rq.complex"].verdict == C.NOT_COMPARABLE
    assert "throughput-cpu" in vs["throughput.rq.complex"].reason
    assert vs["throughput.celery.simple"].verdict == C.NOT_COMPARABLE
    assert all(v.verdict == C.NOT_COMPARABLE and "features.json" in v.reason
               for v in vs.values() if v.claim.kind == "feature")  # no features.json given


def test_error_records_are_excluded():
    recs = [fixture.record("throughput-noop", "rq+redis", "tuned", "native", 1, throughput=1600.0),
            fixture.record("throughput-noop", "rq+redis", "tuned", "native", 2, error="worker died")]
    data = _run(recs)
    assert len(data.errors) == 1
    assert data.group("throughput-noop", "rq+redis", "tuned", "native").repeats == 1


def test_latency_and_scale_metrics():
    recs = [fixture.record("latency-sporadic", "rq+redis", "tuned", "native", latency=10.0)]
    for w, t in ((1, 500.0), (2, 800.0), (4, 1200.0)):
        recs.append(fixture.record("scale", "huey+sqlite", "tuned", "native", throughput=t, workers=w, slots=1))
    data = _run(recs)
    cl = C.load()
    m = V.measure(data, cl, "latency-sporadic", "enqueue_to_start_p50", "rq+redis")
    assert m is not None and m.value == pytest.approx(4.0)  # fixture: enqueue_to_start = 0.4 x p50
    m = V.measure(data, cl, "scale", "throughput_max_workers", "huey+sqlite")
    assert m is not None and m.value == pytest.approx(600.0)  # 1200/s at 4 workers on 2 cores
    m = V.measure(data, cl, "scale", "scale_gain", "huey+sqlite")
    assert m is not None and m.value == pytest.approx(2.4)


def test_results_tables_show_medians_ranges_and_ratios_from_the_records():
    from anytask.report import tables as T

    recs = [fixture.record("throughput-noop", "rq+redis", "tuned", "native", r, throughput=t)
            for r, t in ((1, 1500.0), (2, 1600.0), (3, 9000.0))]
    recs += [fixture.record("throughput-noop", "rq+redis", "tuned", "facade", 1, throughput=800.0),
             fixture.record("latency-sporadic", "rq+redis", "tuned", "native", latency=10.0),
             fixture.record("latency-sporadic", "rq+redis", "tuned", "facade", latency=15.0),
             fixture.record("throughput-noop", "memory", "tuned", "native", error="no native library")]
    for w, t in ((1, 500.0), (2, 800.0), (4, 1200.0)):
        recs.append(fixture.record("scale", "huey+sqlite", "tuned", "native", throughput=t, workers=w, slots=1))
    data = _run(recs)
    (row,) = [[" ".join(map(str, c)) for c in r] for r in T.headline_rows(data)]
    assert row == ["rq+redis", "tuned", "1,600 [1,500–9,000]", "800", "×0.50", "10.0", "15.0", "×1.50"]
    (drain,) = T.drain_rows(data, "throughput-noop")
    assert drain[5] == ["8.9 %"]  # 1600 / the fixture's raw redis-py drain of 18,000/s
    (lat,) = T.latency_rows(data, "latency-sporadic")
    assert lat[2][0].startswith("10.0; p95 18.0, p99 25.0; start 4.00 + result 5.00")  # fixture: p95 = 1.8 x p50
    assert lat[4] == ["×1.50"]
    series, scale = T.scale_rows(data)
    assert series == [1, 2, 4] and [c[0] for c in scale[0][3:]] == ["500", "800", "1,200", "×2.40"]
    assert T.blocks(_run([]), "m") == []  # a run without such records: no section


def test_feature_and_probe_claims_from_features_json():
    data = D.from_documents(fixture.run_doc(repeats=1), fixture.features_doc())
    vs = {v.claim.id: v for v in V.evaluate(C.load(), data)}
    assert vs["feature.celery.basic_queuing"].verdict == C.CONFIRMED
    assert vs["feature.dramatiq.result_storage"].verdict == C.REFUTED  # fixture: probe says yes, survey no
    assert vs["feature.huey.job_chaining"].verdict == C.PARTLY  # fixture: partial
    assert vs["feature.celery.configuration"].verdict == C.CONFIRMED  # Complex = no
    assert vs["side.rq.no_builtin_scheduling"].verdict == C.REFUTED
    assert vs["side.rq.redis_only"].verdict == C.CONFIRMED
    assert vs["side.huey.backends"].verdict == C.NOT_COMPARABLE
    assert vs["side.rq.web_dashboard"].verdict == C.NOT_COMPARABLE


# ----------------------------------------------------------------------------- survey.toml coverage
def test_survey_toml_is_valid_and_every_rule_is_known():
    cl = C.load()
    assert len({c.id for c in cl.claims}) == len(cl.claims)
    for c in cl.claims:
        if c.metric:
            assert c.metric in V.METRICS, c.id
        for lib in c.libraries:
            assert lib in LIBS, c.id
    for name in ("numeric", "rank", "spread", "lowest", "feature"):
        assert name in cl.rules


def _tables_in_survey(text: str) -> dict[str, dict[str, dict[str, str]]]:
    """The survey's S2 markdown tables: title -> first-column label -> header -> cell."""
    s2 = text[text.index("S2: Comprehensive"):text.index("S3: Need-Driven")]
    out: dict[str, dict[str, dict[str, str]]] = {}
    for m in re.finditer(r"### ([^\n]+?):?\n((?:\|[^\n]*\|\n)+)", s2):
        title = m.group(1).strip().rstrip(":")
        lines = [[c.strip().strip("*").strip() for c in ln.strip().strip("|").split("|")]
                 for ln in m.group(2).strip().splitlines()]
        header, rows = lines[0], lines[2:]
        out[title] = {r[0]: dict(zip(header[1:], r[1:])) for r in rows}
    return out


EXPECTED_ROWS = {
    "throughput": ["Simple Tasks", "Complex Tasks", "Bulk Processing"],
    "latency": ["Task Pickup", "Processing Start", "End-to-End"],
    "resource": ["Memory Overhead", "CPU Usage", "Network I/O"],
}
FEATURE_ROWS = {
    "features-core": ["Basic Queuing", "Job Retries", "Scheduling", "Priority Queues", "Job Chaining",
                      "Workflow Groups"],
    "features-advanced": ["Rate Limiting", "Dead Letter Queues", "Result Storage", "Task Routing",
                          "Custom Serializers", "Monitoring APIs"],
    "features-devex": ["Setup Simplicity", "Configuration", "Debugging Tools", "Documentation", "Type Safety",
                       "Async Support"],
}


def test_survey_toml_covers_every_library_and_row_of_each_table():
    cl = C.load()
    have = {(c.table, c.library, c.column if c.kind != "feature" else c.row) for c in cl.claims}
    for table, cols in EXPECTED_ROWS.items():
        for lib in LIBS:
            for col in cols:
                assert (table, lib, col) in have, (table, lib, col)
    for table, rows in FEATURE_ROWS.items():
        for lib in LIBS:
            for row in rows:
                assert (table, lib, row) in have, (table, lib, row)
    counts = {t: sum(1 for c in cl.claims if c.table == t) for t in (*EXPECTED_ROWS, *FEATURE_ROWS)}
    assert counts == {"throughput": 15, "latency": 15, "resource": 15, "features-core": 30,
                      "features-advanced": 30, "features-devex": 30}
    side = [c for c in cl.claims if c.kind == "side"]
    texts = " | ".join(c.text for c in side)
    for must in ("RQ has no built-in scheduling", "Dramatiq: no built-in result storage",
                 "Huey: not suitable for high-throughput"):
        assert must in texts
    assert all(c.section for c in cl.claims)


@pytest.mark.skipif(not SURVEY.exists(), reason=f"the survey text is not on this machine ({SURVEY})")
def test_survey_toml_cells_match_the_survey_text():
    tables = _tables_in_survey(SURVEY.read_text())
    cl = C.load()
    titles = {"throughput": "Throughput Benchmarks (tasks/second)", "latency": "Latency Characteristics",
              "resource": "Resource Usage", "features-core": "Core Functionality",
              "features-advanced": "Advanced Features", "features-devex": "Developer Experience"}
    checked = 0
    for c in cl.claims:
        if c.table not in titles:
            continue
        t = tables[titles[c.table]]
        if c.kind == "feature":
            cell = t[c.row][c.column]
            cell = {"✅": "yes", "❌": "no"}.get(cell, cell)
        else:
            cell = t[c.row][c.column]
        assert cell == c.claimed, (c.id, cell, c.claimed)
        assert titles[c.table].split(" (")[0] in c.section
        checked += 1
    assert checked == 135


@pytest.mark.skipif(not (REFERENCE / "features.json").exists(), reason="no results/reference/features.json yet")
def test_survey_toml_feature_cells_match_the_probes_transcription():
    f = json.loads((REFERENCE / "features.json").read_text())
    cells = f["survey"]["cells"]
    for c in C.load().of_kind("feature"):
        assert cells[c.row][c.library] == c.claimed, c.id
        for feat in c.features:
            assert feat in f["libraries"][c.library]["features"], (c.id, feat)
    ids = {x["id"] for x in f["claims"]}
    for c in C.load().claims:
        if c.probe_claim:
            assert c.probe_claim in ids, c.id


# --------------------------------------------------------------------------------- output files
def test_fixture_is_a_valid_run_json():
    from anytask.bench.results import validate

    assert validate(fixture.run_doc()) == []


def _outputs(d: Path) -> list[Path]:
    return sorted([d / "report.md", d / "report.html", *sorted((d / "charts").glob("*.png"))])


def test_report_has_every_chart_and_a_verdict_for_every_claim(tmp_path):
    fixture.write(str(tmp_path))
    paths = write_report(str(tmp_path))
    names = sorted(p.name for p in (tmp_path / "charts").glob("*.png"))
    assert names == sorted(f"{n}.png" for n in ("throughput", "latency", "latency_breakdown", "resources", "scale",
                                                 "facade_overhead", "features"))
    assert {str(p) for p in _outputs(tmp_path)} <= set(paths)
    md = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    for c in C.load().claims:
        a = "claim-" + "".join(ch if ch.isalnum() else "-" for ch in c.id)
        assert f'id="{a}"' in md and f'id="{a}"' in html, c.id
    for n in names:
        assert f"charts/{n}" in md
    imgs = re.findall(r'<img src="([^"]+)"', html)
    assert len(imgs) == len(names)
    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png.endswith(b"IEND\xaeB`\x82")
    assert "http://" not in html and "https://" not in html  # no network
    assert "methodology.md" in md and "methodology.md" in html


def test_output_is_deterministic(tmp_path):
    fixture.write(str(tmp_path))
    write_report(str(tmp_path))
    first = {p.name: p.read_bytes() for p in _outputs(tmp_path)}
    png_text = first["throughput.png"]
    assert b"tIME" not in png_text and b"Software" not in png_text and b"Creation" not in png_text
    # the second time in a fresh interpreter with another hash seed: no dependence on set/dict order
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "anytask", "report", str(tmp_path)], check=True, capture_output=True,
                   env={**os.environ, "PYTHONHASHSEED": "12345"}, cwd=str(ROOT), timeout=300)
    second = {p.name: p.read_bytes() for p in _outputs(tmp_path)}
    assert first.keys() == second.keys()
    for k, content in first.items():
        assert content == second[k], f"{k} differs between two runs"


def test_data_strings_are_escaped(tmp_path):
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>|**bold**'
    run = fixture.run_doc(repeats=1, cpu_model=evil)
    run["configs"]["rq+redis/tuned/native"]["command"] = evil
    run["results"][0]["error"] = evil  # turns it into an error record, listed in the report
    feats = fixture.features_doc(observed=evil)
    fixture.write(str(tmp_path), run, feats)
    write_report(str(tmp_path))
    html = (tmp_path / "report.html").read_text()
    md = (tmp_path / "report.md").read_text()
    assert "<script" not in html.lower() and "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "<script" not in md.lower() and "<img src=x" not in md
    assert "&lt;script&gt;" in md


def test_cli(tmp_path, capsys):
    from anytask.cli import main

    fixture.write(str(tmp_path))
    assert main(["report", str(tmp_path), "--format", "md"]) == 0
    assert (tmp_path / "report.md").exists() and not (tmp_path / "report.html").exists()
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert main(["report", str(tmp_path), "--format", "pdf"]) == 2


def test_report_without_features_json(tmp_path):
    fixture.write(str(tmp_path), features=False)
    write_report(str(tmp_path))
    md = (tmp_path / "report.md").read_text()
    assert "no features.json" in md


def test_real_run_json_if_present(tmp_path):
    """A run.json written by `anytask bench run` (results/reference) gives a report without errors."""
    src = REFERENCE / "run.json"
    if not src.exists():
        pytest.skip("no results/reference/run.json yet")
    shutil.copy(src, tmp_path / "run.json")
    if (REFERENCE / "features.json").exists():
        shutil.copy(REFERENCE / "features.json", tmp_path / "features.json")
    write_report(str(tmp_path))
    assert (tmp_path / "report.html").stat().st_size > 10_000


@pytest.mark.skipif(not (REFERENCE / "report.md").exists(), reason="no committed results/reference/report.md yet")
def test_reference_report_regenerates_byte_for_byte(tmp_path):
    dst = tmp_path / "results" / "reference"
    shutil.copytree(REFERENCE, dst, ignore=shutil.ignore_patterns("report.md", "report.html", "charts"))
    write_report(str(dst), docs_href="../../docs")
    for p in _outputs(REFERENCE):
        q = dst / p.relative_to(REFERENCE)
        assert q.exists(), q
        assert filecmp.cmp(p, q, shallow=False), f"{p.relative_to(ROOT)} is not what `anytask report " \
                                                 f"results/reference` writes now: regenerate and commit it"
    assert os.path.exists(dst / "report.html")
