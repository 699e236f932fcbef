"""``anytask``: worker, demo, bench, report and brokers commands."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .facade.adapter import WorkerOptions
from .facade.backends import BACKENDS
from .facade.capabilities import Feature
from .facade.client import Client
from .facade.errors import AnytaskError, UnsupportedFeature
from .facade.schedule import Schedule, registered_schedules
from .facade.task import Task, registered_tasks

SCHEMES_HELP = "\n".join(f"  {spec.example:<72} pip install 'anytask[{spec.extra}]'" if spec.extra
                         else f"  {spec.example}" for spec in BACKENDS.values())

URL_HELP = f"""backend URL (default: $ANYTASK_URL). Known forms:
{SCHEMES_HELP}
RabbitMQ backends keep task states and results in Redis: '?result=redis://HOST:PORT/DB'
(default redis://127.0.0.1:6379/0). Passwords are masked in every log and error."""


def _split(values: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or ():
        out += [p.strip() for p in v.split(",") if p.strip()]
    return out


def _load_tasks(args: argparse.Namespace, command: str) -> tuple[str, list[str], list[Task[Any, Any]]]:
    """The URL, the --tasks modules (imported now) and the tasks they define."""
    url = args.url or os.environ.get("ANYTASK_URL")
    if not url:
        raise AnytaskError(f"no backend URL: give one (anytask {command} rq+redis://127.0.0.1:6379/0 --tasks myapp.tasks) "
                           "or set ANYTASK_URL")
    modules = _split(args.tasks)
    if not modules:
        raise AnytaskError("--tasks is required: name the module(s) that define your @anytask.task functions")
    sys.path.insert(0, os.getcwd())
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise AnytaskError(f"cannot import task module {mod!r}: {exc}. Run the worker from your project's "
                               "root or put it on PYTHONPATH") from None
    tasks = [t for name, t in sorted(registered_tasks().items())
             if any(t.func.__module__ == m or t.func.__module__.startswith(m + ".") for m in modules)]
    return url, modules, tasks


def _beat_schedules(client: Client, modules: Sequence[str]) -> list[Schedule]:
    """The schedules the imported modules declared, checked against the backend (``--beat``)."""
    from .facade.client import check_supported, supporting_backends

    fs = client.capabilities.get(Feature.PERIODIC)
    if not fs.supported:
        raise UnsupportedFeature(client.backend, "periodic tasks (--beat)", fs.how, supporting_backends(Feature.PERIODIC))
    schedules = [s for _, s in sorted(registered_schedules().items())]
    if not schedules:
        raise AnytaskError(f"--beat was given but {', '.join(modules)} declare(s) no anytask.periodic(...) schedule: "
                           "declare one at module level in a --tasks module, or drop --beat")
    for s in schedules:
        check_supported(client.backend, client.capabilities, s.task)
    return schedules


def cmd_worker(args: argparse.Namespace) -> int:
    url, modules, tasks = _load_tasks(args, "worker")
    if not tasks:
        raise AnytaskError(f"no @anytask.task functions found in {', '.join(modules)}")
    client = Client(url)
    schedules = _beat_schedules(client, modules) if args.beat else []
    native = _native_beat(client, schedules) if args.beat == "native" else None
    if not args.beat and registered_schedules():
        logging.getLogger("anytask").info("%d periodic schedule(s) declared; this worker does not fire them "
                                          "(give one worker --beat, or run 'anytask beat')", len(registered_schedules()))
    options = WorkerOptions(concurrency=args.concurrency, queues=tuple(_split(args.queues) or ["default"]),
                            config=args.config, extra=tuple(args.extra), beat=bool(schedules) and native is None)
    logging.getLogger("anytask").info("starting %s worker with %d task(s)", client.url.masked, len(tasks))
    beat = client.adapter.start_beat(schedules) if schedules and native is None else None
    try:
        if native is not None:
            options = native.prepare(options)
        return client.adapter.run_worker(tasks, options)
    finally:
        if beat is not None:
            beat.stop()
        if native is not None:
            native.stop()


def _native_beat(client: Client, schedules: Sequence[Schedule]) -> Any:
    """``--beat native``: the library's own scheduler (adapter.native_beat; docs/periodic.md), translated now."""
    make = getattr(client.adapter, "native_beat", None)
    if make is None:
        raise UnsupportedFeature(client.backend, "the library's own scheduler (--beat native)",
                                 "this adapter has no native scheduler translation; use --beat (anytask's beat)")
    return make(schedules)


def cmd_beat(args: argparse.Namespace) -> int:
    """Only the beat: fire the schedules until SIGTERM/SIGINT; workers run elsewhere."""
    import signal

    from .facade.beat import Beat

    url, modules, _ = _load_tasks(args, "beat")
    client = Client(url)
    if args.native:  # the library's own scheduler in the foreground (docs/periodic.md)
        return int(_native_beat(client, _beat_schedules(client, modules)).run(client.backend))
    beat = Beat(client, _beat_schedules(client, modules))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: beat.stop())
    beat.run()
    client.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.urls)


def cmd_capabilities(args: argparse.Namespace) -> int:
    from .capdoc import render

    text = render()
    if args.write:
        with open(args.write, "w") as fh:
            fh.write(text)
        print(f"wrote {args.write}")
    else:
        print(text, end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anytask", description="One API over Celery, RQ, Dramatiq, Huey and TaskiQ.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="'anytask COMMAND --help' shows each command's options. Log level: "
                                       "$ANYTASK_LOG (default INFO).\nDocs: README.md and docs/ (periodic.md, "
                                       "canvas.md, errors.md, reliability.md, capabilities.md).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    w = sub.add_parser(
        "worker", help="run the backend's own worker with your tasks registered",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Start the library's own worker machinery (rq worker, huey_consumer, celery worker, "
                    "dramatiq, taskiq worker) with every @anytask.task of the given modules registered "
                    "natively under its name. SIGTERM/SIGINT shut it down the library's way; the exit code "
                    "is the worker's.",
        epilog=f"{URL_HELP}\n\nexample:\n  anytask worker rq+redis://127.0.0.1:6379/0 --tasks myapp.tasks --concurrency 4\n"
               "  anytask worker rq+redis://127.0.0.1:6379/0 --tasks myapp.tasks --beat   # also fire periodic schedules\n"
               "  anytask worker celery+amqp://guest:guest@127.0.0.1:5672// --tasks myapp.tasks -- --loglevel=debug")
    w.add_argument("url", nargs="?", help="backend URL (see below); default $ANYTASK_URL. Arguments after "
                   "'--' go to the native worker unchanged")
    w.add_argument("--tasks", "-t", action="append", required=True, metavar="MODULE[,MODULE]",
                   help="module(s) that define the tasks (and declare the schedules, for --beat), comma-separated "
                        "or repeated; imported before the worker starts")
    w.add_argument("--concurrency", "-c", type=int, default=2, help="execution slots (processes, threads or "
                   "async slots, as the backend's pool uses; default 2)")
    w.add_argument("--queues", "-Q", action="append", metavar="QUEUE[,QUEUE]",
                   help="queues to consume, comma-separated or repeated (default: the queue named 'default'; a "
                        "Huey worker consumes exactly one)")
    w.add_argument("--config", choices=["defaults", "tuned", "reliable"], default="defaults",
                   help="named configuration: the library's defaults, its documented throughput tuning, or "
                        "reliable (acks late / requeue where the library can: the delivery each backend declares "
                        "is in docs/capabilities.md and docs/reliability.md) (default: defaults)")
    w.add_argument("--beat", "-B", nargs="?", const="anytask", choices=("anytask", "native"), default=None,
                   help="also fire the anytask.periodic(...) schedules the modules declare (docs/periodic.md); "
                        "any number of workers may run --beat: each fire is claimed once cluster-wide. "
                        "'--beat native' runs the library's own scheduler instead (celery beat, TaskiQ's "
                        "scheduler, RQ's CronScheduler, Huey's periodic tasks): run exactly one")
    w.set_defaults(extra=[])
    w.set_defaults(func=cmd_worker)

    b = sub.add_parser("beat", help="fire the periodic schedules only (workers run elsewhere)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Import the modules, then submit each anytask.periodic(...) schedule's task at its "
                                   "fire times until SIGTERM/SIGINT. The same beat as 'anytask worker --beat', without "
                                   "a worker; several beats never fire one fire time twice. See docs/periodic.md.",
                       epilog=f"{URL_HELP}\n\nexample:\n  anytask beat rq+redis://127.0.0.1:6379/0 --tasks myapp.tasks")
    b.add_argument("url", nargs="?", help="backend URL; default $ANYTASK_URL")
    b.add_argument("--tasks", "-t", action="append", required=True, metavar="MODULE[,MODULE]",
                   help="module(s) that declare the schedules, comma-separated or repeated")
    b.add_argument("--native", action="store_true",
                   help="run the library's own scheduler instead (celery beat, TaskiQ's scheduler loop, RQ's "
                        "CronScheduler); run exactly one. Huey's periodic tasks run in its consumer: use "
                        "'anytask worker --beat native' there")
    b.set_defaults(func=cmd_beat)

    d = sub.add_parser("demo", help="submit a few tasks through every reachable backend and print what happens",
                       description="Through each backend, start a worker, submit add(2, 3), a failing task and 50 "
                                   "adds, print states, results and timings, and stop the worker. Default URLs use "
                                   "Redis DBs 9-12 ($ANYTASK_DEMO_REDIS) and RabbitMQ ($ANYTASK_DEMO_AMQP) with "
                                   "demo_* queue prefixes.")
    d.add_argument("urls", nargs="*", help="backend URLs (default: every backend whose broker answers)")
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("capabilities", help="print the backend x feature table from the adapters' declarations",
                       description="Print, as Markdown, what every backend does natively, emulates or refuses "
                                   "(each feature with how or why) and its delivery guarantee, from the adapters' "
                                   "declarations. docs/capabilities.md is this output; a test fails when it is "
                                   "stale.")
    c.add_argument("--write", metavar="FILE", nargs="?", const="docs/capabilities.md",
                   help="write the Markdown to FILE (default docs/capabilities.md)")
    c.set_defaults(func=cmd_capabilities)

    # Subcommands of the optional parts (bench, brokers, report, probe) register themselves.
    for module in ("anytask.bench.cli", "anytask.report.cli", "anytask.probe.cli"):
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            if exc.name and exc.name.startswith("anytask"):
                continue  # that part does not exist yet
            raise
        mod.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("ANYTASK_LOG", "INFO"), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:  # everything after '--' goes to the native worker untouched
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    args = parser.parse_args(argv)
    if hasattr(args, "extra"):
        args.extra = [*args.extra, *extra]
    try:
        return int(args.func(args) or 0)
    except AnytaskError as exc:
        from .facade.url import mask

        print(f"anytask: error: {mask(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
