"""Module-level tasks used by the conformance suite and the probes (workers import this module)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from anytask import progress, task


class TaskBoom(Exception):
    """Raised on purpose by :func:`fail`."""


@task
def ping() -> str:
    return "pong"


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def echo(value: Any) -> Any:
    return value


@task
def return_none() -> None:
    return None


@task
def fail(message: str) -> None:
    raise TaskBoom(message)


@task
def bad_return() -> Any:
    return {1, 2, 3}  # a set is not JSON


@task
def sleep(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return value


@task
async def async_add(x: int, y: int) -> int:
    await asyncio.sleep(0.01)
    return x + y


def _append(path: str, line: str) -> int:
    """Append a line and return how many lines the file has now (O_APPEND is atomic for short lines)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    with open(path) as fh:
        return sum(1 for _ in fh)


@task
def record(path: str, token: str) -> str:
    """Append ``token`` to ``path``: the suite counts executions per token."""
    _append(path, token)
    return token


@task
def flaky(path: str, failures: int) -> int:
    """Fail the first ``failures`` runs (counted in ``path``), then return the run number."""
    n = _append(path, "run")
    if n <= failures:
        raise TaskBoom(f"run {n} fails on purpose")
    return n


@task
def with_progress(steps: int, pause: float) -> int:
    for i in range(steps):
        progress(i + 1, steps, stage="step")
        time.sleep(pause)
    return steps


@task
def record_time(path: str, token: str) -> float:
    """Append ``token`` and the start time: the suite checks rates and orders."""
    now = time.time()
    _append(path, f"{token} {now:.6f}")
    return now


@task
def slow_record(path: str, seconds: float) -> str:
    """Append 'start', sleep, append 'end': the suite sees whether a cancelled task ran on."""
    _append(path, "start")
    time.sleep(seconds)
    _append(path, "end")
    return "finished"


# -- bad input (issue 7): an exception class the client cannot import ------------------------------


class _WorkerOnlyError(Exception):
    """Claims a module no client has, and needs two constructor arguments (so it cannot be rebuilt)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}: {detail}")
        self.code = code


_WorkerOnlyError.__module__ = "anytask_worker_only.errors"
_WorkerOnlyError.__qualname__ = _WorkerOnlyError.__name__ = "WorkerOnlyError"


@task
def fail_unimportable(code: int, detail: str) -> None:
    raise _WorkerOnlyError(code, detail)


# -- fault tests (tests/test_faults.py, issue 7) -------------------------------------------------------------


@task
def fault_work(path: str, token: str, seconds: float) -> str:
    """Append 'start TOKEN', sleep, append 'end TOKEN': the fault tests count completions per token."""
    _append(path, f"start {token}")
    time.sleep(seconds)
    _append(path, f"end {token}")
    return token


@task
def kill_own_worker(path: str, token: str) -> None:
    """A poison message: append TOKEN, then SIGKILL the process running it, every time."""
    import signal

    _append(path, token)
    os.kill(os.getpid(), signal.SIGKILL)


# -- canvas (chain / group / chord) test tasks (docs/canvas.md) ------------------------------------------------


@task
def collect(prev: list[str] | None, path: str, token: str) -> list[str]:
    """A chain link: append ``token`` to ``path`` and to the previous link's list, return the list."""
    _append(path, token)
    return [*(prev or []), token]


@task
def boom_after(prev: Any, message: str) -> None:
    """A chain link that fails: the links after it must never run."""
    raise TaskBoom(f"{message} (previous result {prev!r})")


@task
def sleep_until(at: float, value: Any) -> Any:
    """Sleep until the host clock reaches ``at``: members started together finish together."""
    time.sleep(max(0.0, at - time.time()))
    return value


@task
def gather(results: list[Any], path: str, token: str) -> list[Any]:
    """A chord callback: record one execution per call in ``path``, return the results it got."""
    _append(path, token)
    return results
