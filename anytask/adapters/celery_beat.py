"""``anytask worker --beat native`` on Celery: celery beat, embedded in the worker (``celery worker -B``).

The declarations become ``beat_schedule`` entries (``timedelta`` for ``every=``, ``crontab`` for
``cron=``, UTC as the adapter's app); the scheduler is Celery's ``PersistentScheduler`` (its shelve
schedule file in a temporary directory of this worker) with one change: a due entry is sent with
anytask's ``client.submit`` instead of ``send_task``, so each fire is an ordinary anytask task run.
Celery's rule holds: run one beat per schedule (two beats fire every entry twice).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from celery.beat import PersistentScheduler  # type: ignore[import-untyped]
from celery.schedules import crontab  # type: ignore[import-untyped]

from ..facade.adapter import WorkerOptions
from ..facade.schedule import Every, Schedule
from ._native_beat import NativeBeat, cron_for, fire

if TYPE_CHECKING:
    from .celery import CeleryAdapter


class AnytaskScheduler(PersistentScheduler):  # type: ignore[misc]
    """celery beat's PersistentScheduler, sending each due entry through anytask's submit."""

    url = ""
    schedules: dict[str, Schedule] = {}  # set by CeleryNativeBeat.prepare; the forked beat inherits them

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        entry = self.reserve(entry) if advance else entry
        return _Sent(fire(self.url, self.schedules[entry.name]))


class _Sent:
    def __init__(self, id: str) -> None:
        self.id = id


def beat_entry(backend: str, s: Schedule) -> dict[str, Any]:
    """One ``beat_schedule`` entry (raises UnsupportedFeature for what crontab cannot say)."""
    if isinstance(s.when, Every):
        when: Any = timedelta(seconds=s.when.seconds)
    else:
        m, h, dom, mon, dow = cron_for(backend, s, "Celery's crontab", days_or=False)
        when = crontab(minute=m, hour=h, day_of_month=dom, month_of_year=mon, day_of_week=dow)
    return {"task": s.task.name, "schedule": when, "args": list(s.args), "kwargs": dict(s.kwargs)}


class CeleryNativeBeat(NativeBeat):
    def __init__(self, adapter: CeleryAdapter, schedules: Sequence[Schedule]) -> None:
        super().__init__(adapter.url.raw, schedules)
        self.adapter = adapter
        self.entries = {s.name: beat_entry(adapter.name, s) for s in self.schedules}
        self.dir = ""

    def prepare(self, options: WorkerOptions) -> WorkerOptions:
        self.dir = tempfile.mkdtemp(prefix="anytask-celerybeat-")
        AnytaskScheduler.url = self.url
        AnytaskScheduler.schedules = {s.name: s for s in self.schedules}
        self.adapter.app.conf.update(beat_schedule=self.entries,
                                     beat_scheduler=f"{AnytaskScheduler.__module__}:AnytaskScheduler")
        extra = ("-B", f"--schedule={self.dir}/celerybeat-schedule")
        return replace(options, extra=(*extra, *options.extra))

    def run(self, backend: str) -> int:
        """``celery beat`` (its own process, this one) with the same scheduler and a temporary schedule file."""
        self.prepare(WorkerOptions())
        try:
            return int(self.adapter.app.start(["beat", "--loglevel=INFO", f"--schedule={self.dir}/celerybeat-schedule"]) or 0)
        finally:
            self.stop()

    def stop(self) -> None:
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
