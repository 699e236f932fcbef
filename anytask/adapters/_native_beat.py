"""``anytask worker --beat native``: what the per-library translations share (stdlib only).

The library's own scheduler decides *when* a schedule fires (Celery beat, TaskiQ's SchedulerLoop,
RQ's CronScheduler, Huey's consumer); each fire is sent with anytask's ``client.submit`` so it is an
ordinary anytask task run (an id, a state record, the task's options), executed by the task's
facade wrapper. Unlike anytask's beat nothing is claimed: run exactly one native scheduler per
schedule set (docs/periodic.md, "The library's own scheduler").

Each adapter that offers it has ``native_beat(schedules) -> NativeBeat``; the worker calls
:meth:`NativeBeat.prepare` before the library's worker starts (translation errors are raised there,
before anything runs) and :meth:`NativeBeat.stop` after it ends.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any

from ..facade.adapter import WorkerOptions
from ..facade.errors import UnsupportedFeature
from ..facade.schedule import Cron, Every, Schedule

log = logging.getLogger("anytask.beat")

FEATURE = "the library's own scheduler (--beat native)"

_FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


def refuse(backend: str, schedule: Schedule | None, reason: str) -> UnsupportedFeature:
    what = f"{FEATURE} for {schedule!r}" if schedule is not None else FEATURE
    return UnsupportedFeature(backend, what, f"{reason}; the default 'anytask worker --beat' (anytask's beat) "
                              "fires it on every backend that declares periodic")


def cron_fields(cron: Cron) -> tuple[str, str, str, str, str]:
    """The parsed expression as five explicit fields (``*`` where a field takes every value, else a
    sorted comma list of numbers; weekdays 0 = Sunday), for libraries whose dialect differs in names,
    macros or step syntax."""
    sets = (cron.minutes, cron.hours, cron.days, cron.months, cron.weekdays)
    out = []
    for values, (lo, hi) in zip(sets, _FIELD_RANGES):
        out.append("*" if set(values) == set(range(lo, hi + 1)) else ",".join(str(v) for v in sorted(values)))
    m, h, dom, mon, dow = out
    return m, h, dom, mon, dow


def cron_for(backend: str, schedule: Schedule, library: str, *, days_or: bool) -> tuple[str, str, str, str, str]:
    """Explicit fields (:func:`cron_fields`) for a library whose day fields, when both are restricted,
    mean "either" (``days_or=True``: croniter, pycron) or "both" (``days_or=False``: Celery's and
    Huey's crontab). An expression whose meaning in anytask (Vixie cron) differs is refused."""
    assert isinstance(schedule.when, Cron)
    fields = cron_fields(schedule.when)
    if schedule.when.days_or and "*" in (fields[2], fields[4]):  # "either", and one takes every day: every day
        return fields[0], fields[1], "*", fields[3], "*"
    if fields[2] != "*" and fields[4] != "*" and schedule.when.days_or != days_or:
        theirs, ours = ("either", "both") if days_or else ("both", "either")
        raise refuse(backend, schedule, f"{library} requires {theirs} of day-of-month and day-of-week to match "
                     f"when both are restricted, while cron {schedule.when.expr!r} means {ours} in anytask (Vixie "
                     "cron); split it into schedules that restrict one day field each")
    return fields


def whole_seconds(backend: str, schedule: Schedule, library: str) -> int:
    assert isinstance(schedule.when, Every)
    s = schedule.when.seconds
    if s != int(s):
        raise refuse(backend, schedule, f"{library}'s scheduler takes whole seconds; every={s:g} is not")
    return int(s)


_CLIENTS: dict[tuple[int, str], Any] = {}


def fire(url: str, schedule: Schedule) -> str:
    """Submit one fire of ``schedule`` through anytask's client (one client per process and URL)."""
    from ..facade.client import Client

    key = (os.getpid(), url)
    client = _CLIENTS.get(key)
    if client is None:
        client = _CLIENTS[key] = Client(url)
    handle = client.submit(schedule.task, *schedule.args, **dict(schedule.kwargs))
    log.info("native scheduler: fired %s as task %s", schedule.name, handle.id)
    return str(handle.id)


class NativeBeat:
    """One library's scheduler beside ``anytask worker``. Subclasses translate in ``__init__``
    (raising ``UnsupportedFeature`` for what the library cannot express) and override what they need."""

    def __init__(self, url: str, schedules: Sequence[Schedule]) -> None:
        self.url = url
        self.schedules = tuple(schedules)
        self._proc: Any = None

    def prepare(self, options: WorkerOptions) -> WorkerOptions:
        """Start the scheduler (or configure the worker to run it); return the worker's options."""
        return options

    def start_process(self, target: Callable[[], None], name: str) -> None:
        """Run ``target`` (the library's scheduler loop) in a forked child of this process; SIGTERM ends it."""
        ctx = multiprocessing.get_context("fork")
        self._proc = ctx.Process(target=_child, args=(target,), name=name, daemon=True)
        self._proc.start()
        log.info("%s started (pid %s) with %d schedule(s)", name, self._proc.pid, len(self.schedules))

    def run(self, backend: str) -> int:
        """``anytask beat URL --native``: the scheduler in the foreground until SIGTERM/SIGINT."""
        raise refuse(backend, None, "this library's scheduler runs inside its worker: use "
                     "'anytask worker URL --tasks ... --beat native'")

    def stop(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()


def _child(target: Callable[[], None]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker's Ctrl-C reaches the group; stop() ends us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    target()
