"""``anytask probe``: run the feature probes and write features.json."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

DEFAULT_SURVEY = "/work/shared/survey/000_858ee4e4d6039a38.txt"


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or ():
        out += [p.strip() for p in v.split(",") if p.strip()]
    return out


def cmd_probe(args: argparse.Namespace) -> int:
    from .result import LIBRARIES, validate_features_json
    from .runner import build_document, flush_probe_dbs, run_all

    libs = _split(args.libraries) or list(LIBRARIES)
    bad = [lib for lib in libs if lib not in LIBRARIES]
    if bad:
        print(f"anytask probe: unknown library {', '.join(bad)} (known: {', '.join(LIBRARIES)})", file=sys.stderr)
        return 2
    features = _split(args.features) or None
    t0 = time.monotonic()
    flush_probe_dbs()

    def progress(r: Any) -> None:
        print(f"{r.library:9} {r.feature:28} {r.verdict:8} {r.seconds or 0:6.1f}s  {r.observed[:90]}", flush=True)

    try:
        results = run_all(libs, features, jobs=args.jobs, progress=progress)
    finally:
        flush_probe_dbs()
    doc = build_document(results, time.monotonic() - t0, args.survey)
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=1, sort_keys=False)
        fh.write("\n")
    problems = validate_features_json(doc, tuple(libs)) if features is None else []
    print(f"wrote {args.out} ({len(results)} probes in {time.monotonic() - t0:.0f} s)")
    for p in problems:
        print(f"schema: {p}", file=sys.stderr)
    return 1 if problems else 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "probe", help="run small real experiments with each library's own API and write features.json",
        description="Checks every cell of the survey's feature matrices (and its side claims) with an experiment "
                    "on real brokers or a documented static check. Redis ($ANYTASK_PROBE_REDIS, default "
                    "127.0.0.1:6379): "
                    "DBs 13 and 14 are FLUSHED before and after the run; RabbitMQ: queues 'probe.*'. One run at a "
                    "time. Each probe runs in its own subprocess with a timeout; see docs/probes.md.")
    p.add_argument("--libraries", "-l", action="append", metavar="LIB[,LIB]",
                   help="celery, rq, dramatiq, huey, taskiq (default: all)")
    p.add_argument("--features", "-f", action="append", metavar="FEATURE[,FEATURE]",
                   help="only these probes, by feature key (retries, chaining, groups, ...: the keys of features.json; "
                        "default: all); a partial run skips the schema check")
    p.add_argument("--out", "-o", default="features.json", help="output file (default features.json)")
    p.add_argument("--jobs", "-j", type=int, default=3, help="probes run in parallel (default 3)")
    p.add_argument("--survey", default=DEFAULT_SURVEY, help="survey file the claims come from (recorded only)")
    p.set_defaults(func=cmd_probe)
