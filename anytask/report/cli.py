"""``anytask report DIR [--format md,html]``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def cmd_report(args: argparse.Namespace) -> int:
    from . import FORMATS, write_report

    formats = [f.strip() for v in (args.format or ["md,html"]) for f in v.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        print(f"anytask report: unknown format {', '.join(bad)} (known: {', '.join(FORMATS)})", file=sys.stderr)
        return 2
    if not os.path.exists(os.path.join(args.dir, "run.json")):
        print(f"anytask report: {os.path.join(args.dir, 'run.json')} not found (write it with "
              "'anytask bench run --out DIR')", file=sys.stderr)
        return 2
    try:
        paths = write_report(args.dir, formats, claims_path=args.claims, features_path=args.features)
    except (ValueError, OSError) as exc:
        print(f"anytask report: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(f"wrote {p}")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report", help="judge the survey's claims against DIR/run.json (+ features.json): report.md, report.html",
        description="Read DIR/run.json (anytask bench run) and DIR/features.json (anytask probe) if present, decide "
                    "every claim of scenarios/claims/survey.toml with its rule, and write DIR/report.md, a "
                    "self-contained DIR/report.html and DIR/charts/*.png. Output is deterministic. See "
                    "docs/report.md.")
    p.add_argument("dir", metavar="DIR", help="directory holding run.json")
    p.add_argument("--format", action="append", metavar="md,html", help="formats to write (default: md,html)")
    p.add_argument("--claims", metavar="TOML", help="claims file (default: scenarios/claims/survey.toml)")
    p.add_argument("--features", metavar="JSON", help="features.json to use (default: DIR/features.json)")
    p.set_defaults(func=cmd_report)
