"""Runs probes, each in its own subprocess with a timeout; writes features.json.

A probe that hangs or crashes becomes `unknown` with the reason; the worker processes it started are
killed by process group (their pids are in the probe's tmp dir) and its RabbitMQ queues deleted."""

from __future__ import annotations

import importlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .result import CLAIMS, CONFIG_WORDS, FEATURES, LIBRARIES, SURVEY_CELLS, ProbeResult, unknown

DEFAULT_TIMEOUT = 60.0
SCHEMA = "anytask.features/1"

# per-probe timeouts beyond the default (seconds)
TIMEOUTS = {"type_safety": 150.0, "scheduling_periodic": 60.0, "configuration": 60.0}

ProbeFunc = Callable[[Any], ProbeResult]


def library_module(lib: str) -> Any:
    return importlib.import_module(f"anytask.probe.{lib}")


def probe_names(lib: str) -> list[str]:
    """Features of the matrices plus this library's side-claim probes, in run order."""
    mod = library_module(lib)
    names = list(FEATURES)
    names += [k for k in mod.PROBES if k not in FEATURES]
    return names


def _version(lib: str) -> str:
    try:
        return library_module(lib).VERSION()
    except Exception as exc:  # noqa: BLE001
        return f"unknown ({exc})"


def run_in_process(lib: str, feature: str, tmp: Path) -> ProbeResult:
    """Body of the probe subprocess."""
    from .common import Lab, ProbeFailed

    mod = library_module(lib)
    version = mod.VERSION()
    func = mod.PROBES.get(feature)
    if func is None:
        return unknown(lib, feature, version, f"no probe written for {lib}/{feature}")
    lab = Lab(lib, feature, tmp, version)
    try:
        return func(lab)
    except ProbeFailed as exc:
        return unknown(lib, feature, version, f"probe could not decide: {exc}")
    except Exception as exc:  # noqa: BLE001
        tb = traceback.format_exc(limit=3)
        return unknown(lib, feature, version, f"probe crashed: {type(exc).__name__}: {exc}; {tb[-600:]}")
    finally:
        lab.cleanup()


def _kill_groups(tmp: Path) -> None:
    pids = tmp / "pids"
    if not pids.exists():
        return
    for line in pids.read_text().split():
        try:
            os.killpg(int(line), signal.SIGKILL)
        except (ProcessLookupError, PermissionError, ValueError):
            pass


def _delete_queues(tmp: Path) -> None:
    qfile = tmp / "queues"
    if qfile.exists():
        from .common import rabbit_delete

        rabbit_delete(sorted(set(qfile.read_text().split())))


def run_probe(lib: str, feature: str, timeout: float | None = None, argv: list[str] | None = None) -> ProbeResult:
    """Run one probe in a subprocess; on timeout kill it (and its workers) and report `unknown`."""
    timeout = timeout if timeout is not None else TIMEOUTS.get(feature, DEFAULT_TIMEOUT)
    tmp = Path(tempfile.mkdtemp(prefix=f"anytask-probe-{lib}-{feature}-"))
    out = tmp / "result.json"
    cmd = [a.replace("{tmp}", str(tmp)) for a in argv] if argv else [
        sys.executable, "-m", "anytask.probe.runner", "--one", lib, feature, str(tmp)]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        output, _ = proc.communicate(timeout=timeout)
        reason = None
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _kill_groups(tmp)  # before reading: a worker holding the pipe open would block communicate()
        try:
            output, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            output = b""
        reason = f"timed out after {timeout:.0f} s (probe killed)"
    finally:
        _kill_groups(tmp)
        _delete_queues(tmp)
    secs = round(time.monotonic() - t0, 2)
    version = "unknown"
    try:
        if reason is None and out.exists():
            r = ProbeResult.from_dict(json.loads(out.read_text()))
            return ProbeResult(**{**r.to_dict(), "seconds": secs})
        if reason is None:
            reason = f"probe process exited with {proc.returncode} without a result: {output.decode(errors='replace')[-600:]}"
        version = _version(lib)
        return unknown(lib, feature, version, reason, seconds=secs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def flush_probe_dbs() -> None:
    """Redis DBs 13 and 14 belong to the probes alone."""
    import redis

    from .common import BROKER_DB, EVENTS_DB, REDIS_HOST

    for db in (BROKER_DB, EVENTS_DB):
        redis.Redis.from_url(f"redis://{REDIS_HOST}/{db}").flushdb()


def run_all(libraries: Iterable[str] = LIBRARIES, features: Iterable[str] | None = None, jobs: int = 3,
            progress: Callable[[ProbeResult], None] | None = None) -> list[ProbeResult]:
    plan = [(lib, f) for lib in libraries for f in (features or probe_names(lib))]
    # long probes first so they overlap with the short ones
    plan.sort(key=lambda lf: -TIMEOUTS.get(lf[1], DEFAULT_TIMEOUT))
    results: list[ProbeResult] = []

    def one(lf: tuple[str, str]) -> ProbeResult:
        r = run_probe(*lf)
        if progress:
            progress(r)
        return r

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
        results = list(ex.map(one, plan))
    return results


def build_document(results: list[ProbeResult], seconds: float, survey_path: str | None) -> dict[str, Any]:
    libs: dict[str, Any] = {}
    for r in results:
        entry = libs.setdefault(r.library, {"version": r.version, "features": {}, "side_probes": {}})
        (entry["features"] if r.feature in FEATURES else entry["side_probes"])[r.feature] = r.to_dict()
    survey: dict[str, Any] = {"source": survey_path, "cells": SURVEY_CELLS, "feature_rows": {
        f: row for f, (_, row) in FEATURES.items()}, "configuration_words": CONFIG_WORDS}
    claims = []
    for cid, (lib, text, section, probe) in CLAIMS.items():
        r = libs.get(lib, {}).get("side_probes", {}).get(probe)
        claims.append({"id": cid, "library": lib, "claim": text, "section": section, "probe": probe,
                       "holds": None if r is None else r.get("holds"),
                       "verdict": None if r is None else r.get("verdict"),
                       "evidence": None if r is None else r.get("observed")})
    contradictions = []
    for lib, entry in libs.items():
        for f, r in entry["features"].items():
            row = FEATURES[f][1]
            said = SURVEY_CELLS[row].get(lib)
            said_v = CONFIG_WORDS.get(said, said) if said else None
            got = r["verdict"]
            if said_v is None or got == "unknown" or got == said_v:
                continue
            contradictions.append({"library": lib, "feature": f, "survey_row": row, "survey": said, "probe": got})
    return {
        "schema": SCHEMA,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "run_seconds": round(seconds, 1),
        "libraries": libs,
        "survey": survey,
        "claims": claims,
        "contradictions": contradictions,
    }


def main_one(argv: list[str]) -> int:
    lib, feature, tmp = argv
    r = run_in_process(lib, feature, Path(tmp))
    Path(tmp, "result.json").write_text(json.dumps(r.to_dict()))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--one":
        sys.exit(main_one(sys.argv[2:]))
    print("usage: python -m anytask.probe.runner --one LIB FEATURE TMPDIR", file=sys.stderr)
    sys.exit(2)
