"""``anytask worker --beat native`` on Huey: Huey's own periodic tasks, fired by the consumer's scheduler.

Each declaration becomes ``huey.periodic_task(crontab(...), name="anytask.periodic.<name>")`` on the
Huey instance of the worker's queue. Huey's consumer checks periodic tasks once a minute (at the
start of each minute, UTC as the adapter's ``utc=True``), enqueues the due ones, and a consumer worker
runs it; its body submits the declared task with anytask's ``client.submit`` (a periodic task takes
no arguments, the submit carries them), so each fire is an ordinary anytask task run, one hop later.

What a crontab can say: whole minutes. ``every=`` must be a whole number of minutes that divides an
hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 min), a whole number of hours that divides a day, or one
day (all aligned to the epoch, as anytask's beat); cron fields are translated as explicit lists.
Huey's rule holds: run one consumer with periodic tasks enabled (each fires them on its own).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from huey import crontab  # type: ignore[import-untyped]

from ..facade.adapter import WorkerOptions
from ..facade.schedule import Every, Schedule
from ._native_beat import NativeBeat, cron_for, fire, refuse

if TYPE_CHECKING:
    from .huey import HueyAdapter

LIBRARY = "Huey's periodic tasks"
TASK_PREFIX = "anytask.periodic."


def crontab_fields(backend: str, s: Schedule) -> dict[str, str]:
    """The ``crontab(...)`` arguments of one declaration (raises UnsupportedFeature for what Huey cannot say)."""
    if not isinstance(s.when, Every):
        m, h, dom, mon, dow = cron_for(backend, s, "Huey's crontab", days_or=False)
        return {"minute": m, "hour": h, "day": dom, "month": mon, "day_of_week": dow}
    seconds = s.when.seconds
    minutes = seconds / 60
    if seconds % 60 or minutes != int(minutes):
        raise refuse(backend, s, f"{LIBRARY} run at whole minutes (the consumer checks them once a minute); "
                     f"every={seconds:g} s is not a multiple of 60 s")
    n = int(minutes)
    if n < 60 and 60 % n == 0:
        return {"minute": ",".join(str(v) for v in range(0, 60, n))}
    if n % 60 == 0 and 24 % (n // 60) == 0:
        return {"minute": "0", "hour": ",".join(str(v) for v in range(0, 24, n // 60))}
    raise refuse(backend, s, f"{LIBRARY} are crontabs: an interval must divide an hour or a day evenly (1, 2, 3, 4, "
                 f"5, 6, 10, 12, 15, 20, 30 minutes or 1, 2, 3, 4, 6, 8, 12, 24 hours); every={seconds:g} s does not")


def validator(backend: str, s: Schedule) -> Callable[[datetime], bool]:
    """Huey's ``validate_datetime`` of one declaration: ``crontab(...)`` with the translated fields."""
    fn: Callable[[datetime], bool] = crontab(strict=True, **crontab_fields(backend, s))
    return fn


class HueyNativeBeat(NativeBeat):
    def __init__(self, adapter: HueyAdapter, schedules: Sequence[Schedule]) -> None:
        super().__init__(adapter.url.raw, schedules)
        self.adapter = adapter
        self.validators = {s.name: validator(adapter.name, s) for s in self.schedules}
        self.registered: dict[str, Any] = {}

    def register(self, queue: str) -> dict[str, Any]:
        """Register the periodic tasks on the Huey instance of ``queue``; name -> Huey TaskWrapper."""
        h = self.adapter.huey(queue)
        for s in self.schedules:
            def body(s: Schedule = s) -> str:
                return fire(self.url, s)

            body.__name__ = f"periodic_{s.name}"
            self.registered[s.name] = h.periodic_task(self.validators[s.name], name=TASK_PREFIX + s.name)(body)
        return self.registered

    def prepare(self, options: WorkerOptions) -> WorkerOptions:
        self.register(options.queues[0])  # run_worker refuses more than one queue
        return options
