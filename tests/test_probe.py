"""anytask probe: the runner's timeout/crash handling, the features.json schema, and a fast real subset."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from anytask.probe.result import FEATURES, LIBRARIES, ProbeResult, validate_features_json
from anytask.probe.runner import build_document, probe_names, run_all, run_probe


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _probe_processes() -> list[int]:
    """Processes (of any library worker) started for a probe: they carry PROBE_TOKEN in their environment."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if b"PROBE_TOKEN=" in (d / "environ").read_bytes():
                found.append(int(d.name))
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie counts as dead
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_hanging_probe_becomes_unknown_and_its_workers_die() -> None:
    # The fake probe starts a "worker" in its own session, registers it like Lab.worker does, then hangs.
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True); "
            "open(sys.argv[1] + '/pids', 'a').write(f'{p.pid}\\n'); "
            "open(sys.argv[1] + '/worker.pid', 'w').write(str(p.pid)); "
            "print(p.pid, flush=True); time.sleep(60)")
    t0 = time.monotonic()
    r = run_probe("rq", "basic_queuing", timeout=2.0, argv=[sys.executable, "-c", code, "{tmp}"])
    assert time.monotonic() - t0 < 15
    assert r.verdict == "unknown"
    assert "timed out" in r.observed
    assert r.library == "rq" and r.feature == "basic_queuing"


def test_timeout_kills_registered_worker_group(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True); "
            "open(sys.argv[1] + '/pids', 'a').write(f'{p.pid}\\n'); "
            f"open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    run_probe("rq", "basic_queuing", timeout=2.0, argv=[sys.executable, "-c", code, "{tmp}"])
    pid = int(marker.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the worker started by a timed-out probe survived"


def test_crashing_probe_becomes_unknown() -> None:
    r = run_probe("huey", "retries", timeout=10.0, argv=[sys.executable, "-c", "raise SystemExit(3)", "{tmp}"])
    assert r.verdict == "unknown"
    assert "exited with 3" in r.observed


def test_result_rules() -> None:
    with pytest.raises(ValueError):
        ProbeResult("rq", "chaining", "partial", "rq 3", "api", "obs")  # partial needs 'missing'
    with pytest.raises(ValueError):
        ProbeResult("taskiq", "chaining", "plugin", "taskiq", "api", "obs")  # plugin needs the package
    with pytest.raises(ValueError):
        ProbeResult("rq", "chaining", "maybe", "rq 3", "api", "obs")
    r = ProbeResult("rq", "chaining", "partial", "rq 3", "api", "obs", missing="result passing")
    assert ProbeResult.from_dict(r.to_dict()) == r


def test_every_library_has_a_probe_for_every_cell() -> None:
    for lib in LIBRARIES:
        names = probe_names(lib)
        assert set(FEATURES) <= set(names)
        mod = __import__(f"anytask.probe.{lib}", fromlist=["PROBES"])
        missing = set(FEATURES) - set(mod.PROBES)
        assert not missing, f"{lib} lacks probes for {missing}"


def test_features_json_schema() -> None:
    results = [ProbeResult(lib, f, "unknown", "v", "api", "not run") for lib in LIBRARIES for f in FEATURES]
    results.append(ProbeResult("rq", "claim_scheduling", "yes", "v", "api", "ran", holds=False))
    doc = build_document(results, 1.0, "survey.txt")
    assert validate_features_json(doc) == []
    assert doc["libraries"]["rq"]["side_probes"]["claim_scheduling"]["holds"] is False
    assert {c["id"] for c in doc["claims"]} >= {"rq_no_builtin_scheduling", "huey_backends"}
    del doc["libraries"]["huey"]["features"]["priority"]
    doc["libraries"]["rq"]["features"]["groups"]["verdict"] = "maybe"
    problems = validate_features_json(doc)
    assert any("huey/priority missing" in p for p in problems)
    assert any("rq/groups bad verdict" in p for p in problems)


def test_contradictions_are_listed() -> None:
    results = [ProbeResult("huey", "priority", "yes", "v", "api", "order observed"),
               ProbeResult("celery", "configuration", "no", "v", "api", "complex")]
    doc = build_document(results, 1.0, None)
    assert doc["contradictions"] == [{"library": "huey", "feature": "priority", "survey_row": "Priority Queues",
                                      "survey": "no", "probe": "yes"}]  # celery Complex == no: agrees


def test_cli_registers_probe() -> None:
    from anytask.cli import build_parser

    args = build_parser().parse_args(["probe", "--libraries", "rq,huey", "--out", "x.json"])
    assert args.libraries == ["rq,huey"] and args.out == "x.json"


@pytest.mark.skipif(not (_reachable(6379) and _reachable(5672)), reason="needs Redis on 6379 and RabbitMQ on 5672")
def test_real_subset() -> None:
    from anytask.probe.runner import flush_probe_dbs

    plan = {"rq": ["basic_queuing", "priority"], "huey": ["chaining", "monitoring_apis"],
            "celery": ["chaining"], "dramatiq": ["groups", "type_safety"], "taskiq": ["async_support"]}
    results = []
    flush_probe_dbs()
    try:
        for lib, feats in plan.items():
            results += run_all([lib], feats, jobs=3)
    finally:
        flush_probe_dbs()
    got = {(r.library, r.feature): r for r in results}
    assert got[("rq", "basic_queuing")].verdict == "yes", got[("rq", "basic_queuing")]
    assert got[("rq", "priority")].verdict == "partial"  # queue order + at_front, no per-job priority
    assert got[("huey", "chaining")].verdict == "yes"
    assert got[("huey", "monitoring_apis")].verdict == "yes"
    assert got[("celery", "chaining")].verdict == "yes"
    assert got[("dramatiq", "groups")].verdict == "yes"
    assert got[("dramatiq", "type_safety")].verdict == "yes"
    assert got[("taskiq", "async_support")].verdict == "yes", got[("taskiq", "async_support")]
    for r in results:
        assert r.version and r.api and r.observed and r.seconds is not None
    time.sleep(0.5)
    assert _probe_processes() == [], "probe worker processes left behind"
