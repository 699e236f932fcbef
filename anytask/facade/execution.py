"""Worker-side helpers shared by every adapter: run the function, know the current task."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from . import continuation, serialization
from .adapter import Adapter
from .task import Task


@dataclass(frozen=True)
class TaskContext:
    """What a running task can know of itself."""

    id: str
    task_name: str
    attempt: int = 1
    report_progress: Callable[[dict[str, Any]], None] | None = None
    adapter: Adapter | None = None  # canvas: where continuations go (default: the worker's own backend)


_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar("anytask_current", default=None)


def current_task() -> TaskContext | None:
    """The context of the task running in this thread/coroutine, or None outside a task."""
    return _current.get()


@contextmanager
def task_context(ctx: TaskContext) -> Iterator[TaskContext]:
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def progress(done: float, total: float | None = None, **meta: Any) -> None:
    """Report progress from inside a task; read it with ``handle.progress()``.

    Outside a task, or on a backend that cannot store progress, this does nothing but
    check that ``meta`` is JSON.
    """
    data: dict[str, Any] = {"done": done, "total": total, **meta}
    serialization.check_result("progress", data)
    ctx = _current.get()
    if ctx is not None and ctx.report_progress is not None:
        ctx.report_progress(data)


def call(task: Task[Any, Any], args: Any, kwargs: Any) -> Any:
    """Run a task's function from sync code (async functions get their own event loop).

    The return value is checked to be JSON, so a bad return fails the task with
    :class:`~anytask.facade.errors.NotSerializable` on every backend.
    """
    kwargs, cont = continuation.split(kwargs)  # canvas (docs/canvas.md): a copy, without the continuation
    with _delivery_guard():
        result = task.func(*(args or ()), **kwargs)
        if inspect.isawaitable(result):
            result = _run_coro(result)
    serialization.check_result(task.name, result)
    if cont is not None:  # canvas: next link / chord bookkeeping, before the library stores the success
        ctx = _current.get()
        continuation.after_success(ctx.adapter if ctx else None, ctx.id if ctx else "", cont, result)
    return result


async def acall(task: Task[Any, Any], args: Any, kwargs: Any) -> Any:
    """Run a task's function from async code (sync functions run in a thread)."""
    kwargs, cont = continuation.split(kwargs)  # canvas (docs/canvas.md): a copy, without the continuation
    counted = await asyncio.to_thread(_guard_begin) if _guard else None  # no thread hop without a guard
    try:
        if task.is_async:
            result = await task.func(*(args or ()), **kwargs)
        else:
            ctx = contextvars.copy_context()
            result = await asyncio.to_thread(ctx.run, task.func, *(args or ()), **kwargs)
    finally:
        if counted is not None:
            await asyncio.to_thread(_guard_end, counted)
    serialization.check_result(task.name, result)
    if cont is not None:  # canvas: the adapters' submit/wait block: run them off the event loop
        cur = _current.get()
        await asyncio.to_thread(continuation.after_success, cur.adapter if cur else None, cur.id if cur else "",
                                cont, result)
    return result


def _run_coro(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # A loop runs in this thread (unusual for a sync worker): run the coroutine in a helper thread.
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        ctx = contextvars.copy_context()
        return pool.submit(ctx.run, asyncio.run, coro).result()


# -- delivery guard (issue 7: a poison message must not be redelivered for ever) ----------------------------
# A task whose worker process dies while running it (kill -9, OOM, os._exit, a segfault) is delivered
# again by at-least-once configurations (acks late, reject on worker lost, stream reclaim, heartbeats),
# and a task that kills its worker every time would come back for ever. The worker of such a
# configuration installs a counter of *unfinished starts* per task id kept in the backend's store:
# ``begin`` counts a start, ``end`` (any in-process outcome, success or exception) clears it. A start
# that finds ``max_deliveries`` unfinished starts before it fails the task without running it.

DEFAULT_MAX_DELIVERIES = 3


class WorkerDied(Exception):
    """The task's worker died ``max_deliveries`` times while running it (e.g. it kills its own process)."""


class DeliveryCounter(Protocol):
    def begin(self, task_id: str) -> int:
        """Count a start of ``task_id``; return the unfinished starts, this one included."""

    def end(self, task_id: str) -> None:
        """The start finished in the worker (returned or raised): clear the count."""


_guard: list[tuple[DeliveryCounter, int]] = []


def install_delivery_guard(counter: DeliveryCounter | None, max_deliveries: int = DEFAULT_MAX_DELIVERIES) -> None:
    """Guard every task this process runs (``None`` removes the guard). Called by a worker at startup."""
    if max_deliveries < 1:
        raise ValueError("max_deliveries must be at least 1")
    _guard[:] = [] if counter is None else [(counter, max_deliveries)]


def _guard_begin() -> tuple[DeliveryCounter, str] | None:
    ctx = _current.get()
    if not _guard or ctx is None or not ctx.id:
        return None
    counter, limit = _guard[0]
    started = counter.begin(ctx.id)
    if started > limit:
        raise WorkerDied(f"worker died {started - 1} times while running this task (task {ctx.id}, "
                         f"{ctx.task_name}); not run again: max_deliveries={limit}")
    return counter, ctx.id


def _guard_end(counted: tuple[DeliveryCounter, str]) -> None:
    """Never fails the task: a count left behind (store unreachable) only expires with the records."""
    try:
        counted[0].end(counted[1])
    except Exception:  # noqa: BLE001 - e.g. the broker restarting while the task ended
        logging.getLogger("anytask.worker").warning("could not clear the delivery count of task %s", counted[1],
                                                    exc_info=True)


@contextmanager
def _delivery_guard() -> Iterator[None]:
    counted = _guard_begin()
    try:
        yield
    finally:
        if counted is not None:
            _guard_end(counted)


# -- end of delivery guard ------------------------------------------------------------------------------------
