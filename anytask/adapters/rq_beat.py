"""``anytask worker --beat native`` on RQ: RQ 3's own ``rq.cron.CronScheduler`` (what ``rq cron`` runs),
started with its ``start()`` loop in a child process of ``anytask worker``.

The declarations become ``CronJob`` objects (``interval=`` whole seconds for ``every=``, ``cron=``
explicit fields for ``cron=``). Stock ``CronJob.enqueue`` builds a ``Queue`` with RQ's default pickle
serializer and enqueues the function by import path, which anytask's JSON worker cannot run, so
``enqueue`` is the one method changed: it sends the fire with anytask's ``client.submit`` (an ordinary
anytask task run). RQ's rule holds: run one CronScheduler (each fires on its own). RQ evaluates cron
in the *local* time zone, anytask in UTC: cron schedules are refused unless this process runs in UTC.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rq.cron import CronJob, CronScheduler

from ..facade.adapter import WorkerOptions
from ..facade.schedule import Every, Schedule
from ._native_beat import NativeBeat, cron_for, fire, refuse, whole_seconds

if TYPE_CHECKING:
    from .rq import RQAdapter

LIBRARY = "RQ's CronScheduler"


class AnytaskCronJob(CronJob):
    """A CronJob whose fire goes through anytask's submit (JSON, anytask's record) instead of a pickle Queue."""

    def __init__(self, url: str, schedule: Schedule, **when: Any) -> None:
        super().__init__(queue_name=schedule.task.options.queue, func=fire, name=schedule.name,
                         args=tuple(schedule.args), kwargs=dict(schedule.kwargs), **when)
        self.func_name = schedule.task.name  # what RQ's monitoring shows
        self.url = url
        self.schedule = schedule

    def enqueue(self, connection: Any) -> Any:
        return fire(self.url, self.schedule)


def cron_job(backend: str, url: str, s: Schedule) -> AnytaskCronJob:
    """The CronJob of one declaration (raises UnsupportedFeature for what RQ cannot say)."""
    if isinstance(s.when, Every):
        return AnytaskCronJob(url, s, interval=whole_seconds(backend, s, LIBRARY))
    if time.timezone != 0 or time.daylight:
        raise refuse(backend, s, f"{LIBRARY} evaluates cron in the local time zone ({time.tzname[0]}), anytask's "
                     "cron is UTC; run the worker with TZ=UTC")
    return AnytaskCronJob(url, s, cron=" ".join(cron_for(backend, s, f"{LIBRARY} (croniter)", days_or=True)))


class RQNativeBeat(NativeBeat):
    def __init__(self, adapter: RQAdapter, schedules: Sequence[Schedule]) -> None:
        super().__init__(adapter.url.raw, schedules)
        self.adapter = adapter
        self.jobs = [cron_job(adapter.name, self.url, s) for s in self.schedules]

    def prepare(self, options: WorkerOptions) -> WorkerOptions:
        self.start_process(self._run, "rq CronScheduler (anytask --beat native)")
        return options

    def run(self, backend: str) -> int:
        self._run()
        return 0

    def _run(self) -> None:
        scheduler = CronScheduler(connection=self.adapter.redis)
        scheduler._cron_jobs.extend(self.jobs)
        scheduler.start()  # type: ignore[no-untyped-call]  # RQ's loop; SIGTERM (NativeBeat.stop) ends it the RQ way
