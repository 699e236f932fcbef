"""A small synthetic run.json + features.json, shaped as docs/run-json.md and docs/probes.md describe.

For tests of the report (rules, rendering, determinism, browser check) that must not depend on a real
benchmark run. The numbers are made up and say so (``environment.cpu_model``)."""

from __future__ import annotations

import gzip
import json
import os
from typing import Any

LIBS = ("celery", "rq", "dramatiq", "huey", "taskiq")
BACKENDS = {"celery+redis": 900.0, "celery+amqp": 700.0, "rq+redis": 450.0, "dramatiq+redis": 1500.0,
            "huey+sqlite": 2000.0, "huey+redis": 1200.0, "taskiq+redis": 1100.0, "memory": 40000.0}


def _latency(base: float) -> dict[str, Any]:
    def q(x: float) -> dict[str, float]:
        return {"p50": x, "p95": x * 1.8, "p99": x * 2.5, "max": x * 4}

    return {**q(base), "enqueue_to_start": q(base * 0.4), "end_to_result": q(base * 0.5), "run": q(base * 0.1)}


def record(scenario: str, backend: str, config: str, mode: str, repeat: int = 1, *, throughput: float | None = None,
           latency: float | None = None, workers: int = 1, slots: int = 2, n: int = 200, rss: float | None = None,
           cpu: float | None = None, error: str | None = None, pool: str = "prefork x2", **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "scenario": scenario, "backend": backend, "config": config, "mode": mode, "repeat": repeat, "n": n,
        "completed": 0 if error else n, "lost": 0, "duplicated": 0, "throughput": throughput,
        "enqueue_rate": throughput * 2 if throughput else None, "overhead_ms": 1000 / throughput if throughput else None,
        "latency_ms": _latency(latency) if latency else None, "rss_mb": rss, "cpu_s_per_1k": cpu, "slots": slots,
        "workers": workers, "pool": pool, "ideal_s": None, "drain_s": None, "enqueue_s": None, "efficiency": None,
        "implied_in_flight": None, "arrival_rate": None, "per_core": None, "per_mb": None, "of_floor": None,
        "resources": ({"samples": 4, "interval_s": 0.25, "workers": {"cpu_s": 0.1, "rss_peak_mb": rss},
                       "redis": {"cpu_s": 0.02 * n / 200}, "rabbitmq": {"cpu_s": 0.05 * n / 200}}
                      if throughput else None),
        "flags": ["error"] if error else [], "error": error,
        "raw": None if error else f"raw/{scenario}__{backend.replace('+', '-')}__{config}__{mode}__r{repeat}.jsonl.gz",
    }
    rec.update(extra)
    return rec


def run_doc(repeats: int = 2, cpu_model: str = "synthetic fixture (numbers are made up)") -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for r in range(1, repeats + 1):
        wiggle = 1 + 0.05 * (r - 1)
        for b, t in BACKENDS.items():
            idx = list(BACKENDS).index(b)
            for config in ("defaults", "tuned"):
                for mode in ("native", "facade"):
                    if b == "memory" and mode == "native":
                        results.append(record("throughput-noop", b, config, mode, r,
                                              error="memory:// has no native library"))
                        continue
                    f = (1.0 if config == "tuned" else 0.6) * (1.0 if mode == "native" else 0.8) * wiggle
                    results.append(record("throughput-noop", b, config, mode, r, throughput=t * f,
                                          rss=60.0 + 15 * idx, cpu=1.0 + 0.2 * idx))
                    results.append(record("throughput-cpu", b, config, mode, r, throughput=t * f * 0.4,
                                          rss=60.0 + 15 * idx, cpu=2.0 + 0.2 * idx))
                    results.append(record("latency-sporadic", b, config, mode, r, latency=(2.0 + 3 * idx) / f))
                    results.append(record("latency-steady", b, config, mode, r, latency=(3.0 + 3 * idx) / f,
                                          arrival_rate=t / 2))
                    for w in (1, 2, 4):
                        results.append(record("scale", b, config, mode, r, throughput=t * f * (1 + 0.3 * (w - 1)),
                                              workers=w, slots=1, rss=60.0 * w, cpu=1.0))
    configs = {f"{b}/{c}/{m}": {"mode": m, "pool": "prefork x2", "processes": 2, "threads": 1, "slots": 2,
                                "knobs": {"prefetch": 4 if c == "tuned" else 1},
                                "command": f"worker --backend {b} --config {c}"}
               for b in BACKENDS for c in ("defaults", "tuned") for m in ("native", "facade")}
    return {
        "schema": 1,
        "environment": {"python": "3.11.7", "implementation": "CPython", "platform": "Linux", "cpu_model": cpu_model,
                        "cpu_count": 2, "load_average": [0.5, 0.5, 0.5], "memory_total_mb": 4096,
                        "packages": {"celery": "5.7.0", "rq": "3.0.0"}, "git_commit": "0000000",
                        "clock": "time.monotonic", "backends": sorted(BACKENDS)},
        "configs": configs,
        "ceilings": {"redis-py": {"n": 5000, "samples": 200, "enqueue_rate": 20000.0, "throughput": 18000.0,
                                  "latency_p50_ms": 0.33, "latency_p99_ms": 1.6},
                     "pika": {"error": "not measured in the fixture"}},
        "results": results, "summary": [], "profile": "fixture", "run_id": "fixture1", "seed": 1, "slots": 2,
        "repeats": repeats, "scenarios": ["throughput-noop", "throughput-cpu", "latency-sporadic", "latency-steady",
                                          "scale"],
        "order": [], "instrumentation": {"stamp_pair_us": 4.0, "cpu_rounds": 1000}, "fallback": False,
        "interrupted": False, "started": 1_700_000_000.0, "finished": 1_700_000_600.0,
    }


SURVEY_CELLS = {  # the survey's S2 feature matrices (yes/no; Configuration keeps its words)
    "basic_queuing": "yyyyy", "retries": "yyyyy", "scheduling_delay": "yyyyy", "scheduling_periodic": "yyyyy",
    "priority": "ynyny", "chaining": "ynnny", "groups": "ynnnn", "rate_limiting": "ynyny",
    "dead_letter_queues": "ynyny", "result_storage": "yynyy", "task_routing": "ynyny", "custom_serializers": "yyyny",
    "monitoring_apis": "yyyyy", "setup_simplicity": "nyyyy", "debugging_tools": "yyyyy", "documentation": "yyyyy",
    "type_safety": "nnyny", "async_support": "nnnny",
}


def features_doc(observed: str = "probe ran") -> dict[str, Any]:
    """Every probe agrees with the survey, except Dramatiq's result storage (yes) and Huey's chaining (partial)."""
    libs: dict[str, Any] = {}
    for i, lib in enumerate(LIBS):
        feats = {}
        for feat, cells in SURVEY_CELLS.items():
            verdict = "yes" if cells[i] == "y" else "no"
            if (lib, feat) == ("dramatiq", "result_storage"):
                verdict = "yes"
            if (lib, feat) == ("huey", "chaining"):
                verdict = "partial"
            feats[feat] = {"library": lib, "feature": feat, "verdict": verdict, "version": f"{lib} 1.0",
                           "api": f"{lib}.api()", "observed": observed, "missing": None, "plugin": None,
                           "seconds": 0.1, "measure": None, "holds": None}
        feats["configuration"] = dict(feats["basic_queuing"], feature="configuration",
                                      verdict=["no", "yes", "partial", "yes", "partial"][i])
        libs[lib] = {"version": f"{lib} 1.0", "features": feats, "side_probes": {}}
    claims = [
        {"id": "rq_no_builtin_scheduling", "library": "rq", "probe": "claim_scheduling", "holds": False,
         "verdict": "yes", "evidence": "delayed job ran"},
        {"id": "dramatiq_no_result_storage", "library": "dramatiq", "probe": "claim_result_storage", "holds": False,
         "verdict": "yes", "evidence": "42 read back"},
        {"id": "dramatiq_no_progress_tracking", "library": "dramatiq", "probe": "claim_progress_tracking",
         "holds": True, "verdict": "no", "evidence": "no API"},
        {"id": "rq_redis_only", "library": "rq", "probe": "claim_redis_only", "holds": True, "verdict": "no",
         "evidence": "Redis connection required"},
        {"id": "huey_backends", "library": "huey", "probe": "claim_backends", "holds": None, "verdict": "unknown",
         "evidence": "timed out"},
    ]
    return {"schema": "anytask.features/1", "generated_at": "fixture", "machine": {"cpus": 2}, "run_seconds": 1.0,
            "libraries": libs, "survey": {"configuration_words": {"Simple": "yes", "Medium": "partial",
                                                                   "Complex": "no"}},
            "claims": claims, "contradictions": []}


def write(directory: str, run: dict[str, Any] | None = None, features: dict[str, Any] | None | bool = None,
          raw: bool = True) -> str:
    """Write run.json (+ features.json unless ``features=False``, + a tiny raw file per record) into ``directory``."""
    os.makedirs(directory, exist_ok=True)
    run = run if run is not None else run_doc()
    with open(os.path.join(directory, "run.json"), "w") as fh:
        json.dump(run, fh, indent=1)
    if features is not False:
        with open(os.path.join(directory, "features.json"), "w") as fh:
            json.dump(features if isinstance(features, dict) else features_doc(), fh, indent=1)
    if raw:
        for rec in run["results"]:
            if rec.get("raw"):
                p = os.path.join(directory, rec["raw"])
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with gzip.GzipFile(p, "wb", mtime=0) as fh:
                    fh.write(b'{"id": "b1", "enqueue": 0.0, "starts": [0.001], "ends": [0.002], "seen": 0.003}\n')
    return directory
