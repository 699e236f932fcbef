"""``anytask bench run`` and ``anytask brokers up|down|status``.

Heavy optional dependencies (rich, psutil, docker) are imported inside the command functions,
so ``anytask worker`` never needs them.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _interrupt_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM stop the run the same way: workers stopped, what was measured
    kept. SIGINT gets Python's handler back even when the shell started us with it ignored (a
    background job of a non-interactive shell)."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)


def cmd_bench_run(args: argparse.Namespace) -> int:
    import logging

    from . import orchestrate, scenarios, targets
    from .results import Record

    if "ANYTASK_LOG" not in os.environ:  # pika/kombu INFO lines would tear up the progress display
        logging.getLogger().setLevel(logging.WARNING)
        from .native.base import quiet_missing_queue_warnings

        quiet_missing_queue_warnings()  # the cleanup's deletes of queues already gone
    _interrupt_on_signals()

    profile = scenarios.PROFILES[args.profile]
    out_dir = os.path.abspath(args.out)
    iso = targets.Isolation("probe", workdir=out_dir)
    fallback = False
    if args.backends:
        chosen = targets.parse_list(args.backends)
    else:
        chosen, fallback = targets.default_targets(iso)
    names = _csv(args.scenarios) or list(profile.scenarios)
    try:
        scs = scenarios.load(names, args.profile)
    except ValueError as exc:
        print(f"anytask bench: {exc}", file=sys.stderr)
        return 2
    if args.n:
        from dataclasses import replace

        scs = [replace(s, n=args.n) for s in scs]
    configs, modes, repeats = profile.configs, profile.modes, profile.repeats
    own_only = scenarios.own_only_cells(scs)
    if own_only:  # e.g. --profile full --scenarios soak: run as the soak profile runs it (facade, defaults, once)
        configs, modes, repeats = own_only[0], own_only[1], 1
    opts = orchestrate.Options(
        profile=args.profile, targets=tuple(chosen), scenarios=tuple(scs),
        repeats=args.repeat or repeats, out_dir=out_dir,
        configs=tuple(_csv(args.configs) or configs), modes=tuple(_csv(args.modes) or modes),
        slots=args.slots, ceilings=not args.no_ceilings, resources=not args.no_resources, fallback=fallback,
        **({"seed": args.seed} if args.seed is not None else {}))
    if args.dry_run:
        return _dry_run(opts, args.calibration)
    display: Any
    try:
        from .display import RichDisplay

        display = RichDisplay()
    except ImportError:
        display = orchestrate.QuietDisplay()
    if fallback:
        print("no broker answers: running huey+sqlite and memory only. Start Redis and RabbitMQ with "
              "'anytask brokers up' (then 'anytask brokers status') to benchmark every backend.", file=sys.stderr)
    run = orchestrate.run(opts, display)
    doc = run.to_dict()
    errors: list[Record] = [r for r in run.results if r.error]
    try:
        from .display import print_summary

        print_summary(doc, errors)
    except ImportError:
        import json

        print(json.dumps(doc.get("summary"), indent=1))
    print(f"wrote {os.path.join(out_dir, 'run.json')} ({len(run.results)} records; raw per-task data in "
          f"{os.path.join(out_dir, 'raw')})")
    if not args.no_report:
        try:
            from anytask.report import write_report

            features = args.features
            if features is None and not os.path.exists(os.path.join(out_dir, "features.json")):
                committed = os.path.join("results", "reference", "features.json")  # this machine's probe run
                features = committed if os.path.exists(committed) else None
            if features:
                print(f"feature claims judged by {features} ('anytask probe' makes a fresh one)")
            for path in write_report(out_dir, features_path=features):
                if path.endswith((".md", ".html")):
                    print(f"wrote {path}")
        except Exception as exc:  # noqa: BLE001 - run.json is already written; only the report is missing
            print(f"anytask bench: no report ({type(exc).__name__}: {exc}); run 'anytask report {out_dir}' "
                  "(needs anytask[bench])", file=sys.stderr)
    return 130 if doc.get("interrupted") else 0


def _dry_run(opts: Any, calibration: list[str] | None) -> int:
    """Print the sessions and measurements the run would take and its estimated time; run nothing."""
    from . import orchestrate, plan

    paths = calibration if calibration is not None else plan.default_calibration()
    try:
        cal = plan.load_calibration(paths)
    except (OSError, ValueError, KeyError) as exc:
        print(f"anytask bench: cannot read calibration {paths}: {exc}", file=sys.stderr)
        return 2
    order = orchestrate.session_order(list(opts.targets), opts.configs, opts.modes, opts.repeats, opts.seed)
    p = plan.plan(order, opts.scenarios, cal, opts.profile)
    print(plan.render(p, orchestrate.not_run(opts.scenarios, opts)))
    return 0


def cmd_bench_merge(args: argparse.Namespace) -> int:
    from .merge import MergeError, merge

    try:
        res = merge(args.src, args.into, args.note or "")
    except MergeError as exc:
        print(f"anytask bench merge: {exc}", file=sys.stderr)
        return 2
    print(f"merged {res.added} records of {', '.join(res.scenarios)} from {args.src} into {res.path}"
          + (f" (replacing {res.replaced} records of the same scenarios)" if res.replaced else ""))
    print(f"raw files: {res.raw_copied} copied" + (f", {res.raw_removed} of the replaced records removed"
                                                    if res.raw_removed else ""))
    if res.raw_missing:
        print(f"anytask bench merge: {len(res.raw_missing)} raw files the records name are not in {args.src}, "
              f"e.g. {res.raw_missing[0]}", file=sys.stderr)
    if res.configs_added or res.configs_differing:
        print(f"configs: {res.configs_added} added"
              + (f"; {len(res.configs_differing)} kept as {args.into} declares them although {args.src} differs "
                 f"(e.g. {res.configs_differing[0]})" if res.configs_differing else ""))
    print(f"now run 'anytask report {args.into}'")
    return 0


def cmd_brokers(args: argparse.Namespace) -> int:
    from . import brokers

    return brokers.main(args.action, redis_port=args.redis_port, amqp_port=args.amqp_port, prefer=args.via)


def register(sub: Any) -> None:
    b = sub.add_parser("bench", help="benchmark the backends side by side (native and facade)",
                       description="'anytask bench run --help' for the options; 'anytask bench run --dry-run' prints "
                                   "the plan and its estimated time. Method: docs/methodology.md; output: "
                                   "docs/run-json.md; reading the report: docs/report.md.")
    bsub = b.add_subparsers(dest="bench_command", metavar="SUBCOMMAND")
    bsub.required = True
    r = bsub.add_parser("run", help="run the benchmark scenarios and write DIR/run.json",
                        description="Measure each backend through its own API (native) and through anytask "
                                    "(facade), in two configurations, and write run.json plus raw per-task stamps. "
                                    "See docs/methodology.md.")
    r.add_argument("--profile", choices=["quick", "full", "soak"], default="quick",
                   help="quick, full (includes reliability-* and soak, after the sessions; long), soak (only the "
                        "soak: 100,000 tasks per backend)")
    r.add_argument("--backends", help="comma-separated, e.g. celery+redis,rq+redis (default: every backend whose "
                                      "broker answers; memory and huey+sqlite when none does)")
    r.add_argument("--scenarios", help="comma-separated scenario names, the files in scenarios/ (throughput-noop, "
                        "latency-sporadic, reliability-kill, soak, ...); default per profile")
    r.add_argument("--repeat", type=int, help="repeats (default: the profile's: quick 1, full 3, soak 1)")
    r.add_argument("--out", default="bench-out", help="output directory (default: bench-out)")
    r.add_argument("--configs", help="worker configurations, comma-separated: defaults, tuned, reliable (default: "
                   "defaults,tuned; "
                        "reliability-* run the configs of their TOML, defaults,reliable, and soak runs defaults)")
    r.add_argument("--modes", help="native,facade (default both; reliability-* and soak run facade only)")
    r.add_argument("--slots", type=int, default=2, help="execution slots per backend (default 2)")
    r.add_argument("--n", type=int, help="override the task count of every scenario (smoke runs)")
    r.add_argument("--seed", type=int, help="seed of the randomised backend order")
    r.add_argument("--no-ceilings", action="store_true", help="skip the raw broker ceilings")
    r.add_argument("--no-resources", action="store_true", help="skip psutil sampling")
    r.add_argument("--features", metavar="FILE", help="features.json of 'anytask probe' for the report's feature "
                   "claims (default: DIR/features.json, else results/reference/features.json)")
    r.add_argument("--dry-run", action="store_true",
                   help="print the planned sessions and measurements and an estimated time; run nothing")
    r.add_argument("--calibration", action="append", metavar="RUN_JSON",
                   help="with --dry-run: rates from this run.json (repeatable; default results/reference/run.json)")
    r.add_argument("--no-report", action="store_true",
                   help="do not write DIR/report.md, report.html and charts/ at the end (see 'anytask report')")
    r.set_defaults(func=cmd_bench_run)

    m = bsub.add_parser("merge", help="add the records of a later run (e.g. a soak) to DIR/run.json",
                        description="Add SRC/run.json's records to DIR/run.json for the scenarios SRC ran, "
                                    "replacing DIR's records of those scenarios (merging twice changes nothing), "
                                    "copy their raw files, add the configs DIR lacks and record where they came "
                                    "from (run.json 'merged', shown in the report). DIR keeps its own "
                                    "started/finished. See docs/run-json.md, 'Merged runs'.")
    m.add_argument("src", metavar="SRC_DIR", help="directory of the run to merge (its run.json and raw/)")
    m.add_argument("--into", required=True, metavar="DIR", help="the run directory that receives the records, "
                                                                 "e.g. results/reference")
    m.add_argument("--note", required=True, help="why these records are merged (kept as 'why' in run.json "
                                                 "'merged' and shown in the report)")
    m.set_defaults(func=cmd_bench_merge)

    k = sub.add_parser("brokers", help="start, stop or check Redis and RabbitMQ for the benchmarks",
                       description="up: start Redis and RabbitMQ through Docker when an engine answers (the images "
                                   "and ports of docker-compose.yml), else the local redis-server/rabbitmq-server "
                                   "binaries; down: stop what 'up' started; status: what answers on which URL.")
    k.add_argument("action", choices=["up", "down", "status"], help="up, down or status (see above)")
    k.add_argument("--redis-port", type=int, default=6379, help="Redis port (default 6379)")
    k.add_argument("--amqp-port", type=int, default=5672, help="RabbitMQ AMQP port (default 5672)")
    k.add_argument("--via", choices=["auto", "docker", "local"], default="auto",
                   help="auto: Docker when an engine answers, else local binaries (default); docker or local: "
                        "only that")
    k.set_defaults(func=cmd_brokers)
