"""The facade workload: ``anytask worker URL --tasks anytask.bench.tasks`` registers these.

Every task takes the bench id first; the bodies live in :mod:`anytask.bench.work` and are the
same ones the native task modules run.
"""

from __future__ import annotations

from anytask import task

from . import work


@task
def ping() -> str:
    """Readiness probe: a round trip through broker, worker and result store."""
    return "pong"


@task
def noop(bid: str) -> None:
    work.noop(bid)


@task
def io(bid: str, ms: float) -> None:
    work.io(bid, ms)


@task
def cpu(bid: str, rounds: int) -> None:
    work.cpu(bid, rounds)


@task
def payload(bid: str, blob: str) -> int:
    return work.payload(bid, blob)


@task
def gate(bid: str, path: str, limit: float = 60.0) -> None:
    work.gate(bid, path, limit)
