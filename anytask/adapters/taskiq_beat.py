"""``anytask worker --beat native`` on TaskiQ: taskiq's own scheduler loop (``SchedulerLoop``, what
``taskiq scheduler`` runs) in a child process of ``anytask worker``.

The declarations become ``ScheduledTask`` objects (``interval=`` whole seconds for ``every=``,
``cron=`` explicit UTC fields for ``cron=``) of a schedule source; the scheduler is a
``TaskiqScheduler`` whose ``on_ready`` (taskiq's documented hook, "called when task is ready to be
enqueued") sends the fire with anytask's ``client.submit`` instead of its ``AsyncKicker``, so each
fire is an ordinary anytask task run. TaskiQ's rule holds: run one scheduler (each fires on its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taskiq import ScheduledTask, TaskiqScheduler
from taskiq.abc.schedule_source import ScheduleSource
from taskiq.cli.scheduler.run import SchedulerLoop

from ..facade.adapter import WorkerOptions
from ..facade.schedule import Every, Schedule
from ._native_beat import NativeBeat, cron_for, fire, whole_seconds

if TYPE_CHECKING:
    from .taskiq import TaskiqAdapter

LIBRARY = "TaskiQ's scheduler"


def scheduled_task(backend: str, s: Schedule) -> ScheduledTask:
    """The taskiq ScheduledTask of one declaration (raises UnsupportedFeature for what it cannot say)."""
    common: dict[str, Any] = {"task_name": s.task.name, "labels": {}, "args": list(s.args), "kwargs": dict(s.kwargs),
                              "schedule_id": s.name}
    if isinstance(s.when, Every):
        return ScheduledTask(interval=whole_seconds(backend, s, LIBRARY), **common)
    # taskiq evaluates cron with pycron on UTC time (no cron_offset)
    return ScheduledTask(cron=" ".join(cron_for(backend, s, f"{LIBRARY} (pycron)", days_or=True)), **common)


class AnytaskSource(ScheduleSource):
    """The anytask.periodic declarations, as taskiq schedules."""

    def __init__(self, tasks: Sequence[ScheduledTask]) -> None:
        self.tasks = list(tasks)

    async def get_schedules(self) -> list[ScheduledTask]:
        return list(self.tasks)


class AnytaskScheduler(TaskiqScheduler):
    """TaskiqScheduler sending each ready schedule through anytask's submit (no broker of its own)."""

    def __init__(self, broker: Any, source: AnytaskSource, url: str, schedules: Sequence[Schedule]) -> None:
        super().__init__(broker, [source])
        self.url = url
        self.by_id = {s.name: s for s in schedules}

    async def startup(self) -> None:
        """Nothing to start: fires go through anytask's client, not this scheduler's broker."""

    async def shutdown(self) -> None:
        pass

    async def on_ready(self, source: ScheduleSource, task: ScheduledTask) -> None:
        await asyncio.to_thread(fire, self.url, self.by_id[task.schedule_id])


class TaskiqNativeBeat(NativeBeat):
    def __init__(self, adapter: TaskiqAdapter, schedules: Sequence[Schedule]) -> None:
        super().__init__(adapter.url.raw, schedules)
        self.adapter = adapter
        self.tasks = [scheduled_task(adapter.name, s) for s in self.schedules]

    def prepare(self, options: WorkerOptions) -> WorkerOptions:
        self.start_process(self._run, "taskiq scheduler (anytask --beat native)")
        return options

    def run(self, backend: str) -> int:
        try:
            self._run()
        except KeyboardInterrupt:
            pass
        return 0

    def _run(self) -> None:
        scheduler = AnytaskScheduler(self.adapter.conf.broker(), AnytaskSource(self.tasks), self.url, self.schedules)

        async def main() -> None:
            await scheduler.startup()
            await SchedulerLoop(scheduler).run()

        asyncio.run(main())
