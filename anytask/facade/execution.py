"""Worker-side helpers shared by every adapter: run the function, know the current task."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

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
    if task.is_async:
        result = await task.func(*(args or ()), **kwargs)
    else:
        ctx = contextvars.copy_context()
        result = await asyncio.to_thread(ctx.run, task.func, *(args or ()), **kwargs)
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
