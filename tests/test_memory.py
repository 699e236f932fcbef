"""memory:// features the conformance suite cannot hold back with "no worker running" (memory:// has no
worker process): priority and cancel-before-start, shown with every pool thread busy instead."""

from __future__ import annotations

import time
import uuid

import pytest

import anytask
from anytask import CancelOutcome, Status, TaskCancelled
from anytask.testing import tasks
from anytask.testing.conformance import lines


def _busy(client: anytask.Client, path: str, seconds: float = 1.0) -> anytask.TaskHandle[str]:
    """Occupy the only pool thread until ``seconds`` have passed."""
    h = client.submit(tasks.slow_record, path, seconds)
    deadline = time.monotonic() + 5
    while h.status() is not Status.RUNNING:
        assert time.monotonic() < deadline, "the blocker never started"
        time.sleep(0.01)
    return h


@pytest.fixture
def one_thread() -> anytask.Client:
    return anytask.connect(f"memory://{uuid.uuid4().hex[:8]}?workers=1")


def test_waiting_tasks_start_highest_priority_first(one_thread, tmp_path) -> None:
    path = str(tmp_path / "order")
    blocker = _busy(one_thread, str(tmp_path / "blocker"))
    handles = [one_thread.submit(tasks.record.using(priority=1), path, f"low{i}") for i in range(3)]
    handles += [one_thread.submit(tasks.record.using(priority=8), path, f"high{i}") for i in range(3)]
    handles.append(one_thread.submit(tasks.record, path, "none"))  # no priority = 0, the lowest
    assert blocker.result(timeout=10) == "finished"
    for h in handles:
        h.result(timeout=10)
    assert lines(path) == ["high0", "high1", "high2", "low0", "low1", "low2", "none"]


def test_a_task_cancelled_while_waiting_never_runs(one_thread, tmp_path) -> None:
    path = str(tmp_path / "ran")
    blocker = _busy(one_thread, str(tmp_path / "blocker"))
    waiting = one_thread.submit(tasks.record, path, "cancelled")
    delayed = one_thread.submit(tasks.record.using(delay=0.3), path, "delayed")
    for h in (waiting, delayed):
        res = h.cancel()
        assert res.outcome is CancelOutcome.CANCELLED_BEFORE_START and h.status() is Status.CANCELLED
    running = blocker.cancel()
    assert running.outcome is CancelOutcome.NOT_INTERRUPTIBLE and "running thread" in running.note
    assert blocker.result(timeout=10) == "finished"
    assert one_thread.submit(tasks.record, path, "sentinel").result(timeout=10) == "sentinel"
    time.sleep(0.5)  # the delayed one's timer has fired by now
    assert lines(path) == ["sentinel"]
    with pytest.raises(TaskCancelled):
        waiting.result(timeout=1)
    assert waiting.cancel().outcome is CancelOutcome.ALREADY_FINISHED
