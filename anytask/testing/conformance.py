"""The conformance suite: every case runs against every selected backend, with real workers.

Cases skip only through declared capabilities (:func:`needs`), never by backend name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from typing import Any

import pytest

import anytask
from datetime import datetime, timedelta, timezone

from anytask import CancelOutcome, Feature, Status
from anytask.facade.errors import (
    InvalidTask,
    TaskCancelled,
    NotSerializable,
    ResultTimeout,
    TaskFailed,
    UnknownTaskId,
    UnsupportedFeature,
)

from . import tasks
from .plugin import BackendUnderTest
from .workers import WorkerProcess


RESULT_TIMEOUT = float(os.environ.get("ANYTASK_TEST_RESULT_TIMEOUT", "30"))


def needs(b: BackendUnderTest, feature: Feature) -> None:
    if not b.capabilities.supports(feature):
        pytest.skip(f"{b.case.id} declares {feature.value} unsupported: {b.capabilities.get(feature).how}")


def wait_for_status(b: BackendUnderTest, task_id: str, wanted: Status, timeout: float = 15.0) -> list[Status]:
    seen: list[Status] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = b.client.status(task_id)
        if not seen or seen[-1] is not s:
            seen.append(s)
        if s is wanted:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"{wanted} not observed within {timeout}s; saw {seen}")


def tmpfile(b: BackendUnderTest, stem: str) -> str:
    return os.path.join(b.tmp, f"{stem}-{uuid.uuid4().hex}.txt")


def lines(path: str) -> list[str]:
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [ln.strip() for ln in fh if ln.strip()]


# -- basics ---------------------------------------------------------------------------------


def test_submit_returns_result(anytask_backend: BackendUnderTest) -> None:
    h = anytask_backend.client.submit(tasks.add, 2, 3)
    assert h.task_name == "anytask.testing.tasks.add"
    assert h.backend == anytask_backend.client.backend
    assert h.result(timeout=RESULT_TIMEOUT) == 5
    assert h.status() is Status.SUCCEEDED
    info = h.get()
    assert info.has_value and info.value == 5 and info.status is Status.SUCCEEDED


def test_json_values_round_trip(anytask_backend: BackendUnderTest) -> None:
    value = {"s": "é✓", "n": [1, 2.5, None, True], "nested": {"k": []}}
    assert anytask_backend.client.submit(tasks.echo, value).result(timeout=RESULT_TIMEOUT) == value


def test_none_result_is_distinct_from_unfinished(anytask_backend: BackendUnderTest) -> None:
    h = anytask_backend.client.submit(tasks.return_none)
    assert h.result(timeout=RESULT_TIMEOUT) is None
    info = h.get()
    assert info.status is Status.SUCCEEDED and info.has_value and info.value is None
    slow = anytask_backend.client.submit(tasks.sleep, 1.0, "late")
    early = slow.get()
    assert not early.finished and not early.has_value
    assert slow.result(timeout=RESULT_TIMEOUT) == "late"


def test_exception_marks_failed_with_remote_details(anytask_backend: BackendUnderTest) -> None:
    h = anytask_backend.client.submit(tasks.fail, "boom 42")
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=RESULT_TIMEOUT)
    err = ei.value
    assert err.exc_type == "anytask.testing.tasks.TaskBoom"
    assert err.message == "boom 42"
    assert "TaskBoom" in err.traceback and "boom 42" in err.traceback
    assert isinstance(err.traceback, str)
    assert h.status() is Status.FAILED
    info = h.get()
    assert info.error is not None and info.error.type == "anytask.testing.tasks.TaskBoom"


def test_non_json_return_value_fails_the_task(anytask_backend: BackendUnderTest) -> None:
    h = anytask_backend.client.submit(tasks.bad_return)
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=RESULT_TIMEOUT)
    assert ei.value.exc_type.endswith("NotSerializable")
    assert "return value" in ei.value.message


def test_unknown_id_is_unknown_not_queued(anytask_backend: BackendUnderTest) -> None:
    tid = uuid.uuid4().hex
    assert anytask_backend.client.status(tid) is Status.UNKNOWN
    assert anytask_backend.client.get(tid).status is Status.UNKNOWN
    with pytest.raises(UnknownTaskId):
        anytask_backend.client.result(tid, timeout=1)


def test_running_is_observed(anytask_backend: BackendUnderTest) -> None:
    h = anytask_backend.client.submit(tasks.sleep, 2.0, "done")
    seen = wait_for_status(anytask_backend, h.id, Status.RUNNING)
    assert Status.UNKNOWN not in seen
    assert h.get().started_at is not None
    assert h.result(timeout=RESULT_TIMEOUT) == "done"


def test_second_client_reads_by_id(anytask_backend: BackendUnderTest) -> None:
    h = anytask_backend.client.submit(tasks.add, 20, 22)
    with anytask.connect(anytask_backend.url) as other:
        assert other.status(h.id) in {Status.QUEUED, Status.RUNNING, Status.SUCCEEDED}
        assert other.result(h.id, timeout=RESULT_TIMEOUT) == 42
        assert other.status(h.id) is Status.SUCCEEDED
    # reading does not consume the result
    assert anytask_backend.client.result(h.id, timeout=RESULT_TIMEOUT) == 42


def test_result_timeout(anytask_backend: BackendUnderTest) -> None:
    h = anytask_backend.client.submit(tasks.sleep, 2.0)
    t0 = time.monotonic()
    with pytest.raises(ResultTimeout):
        h.result(timeout=0.3)
    assert time.monotonic() - t0 < 2.0
    assert h.result(timeout=RESULT_TIMEOUT) is None


def test_non_json_argument_is_refused_before_enqueue(anytask_backend: BackendUnderTest) -> None:
    with pytest.raises(NotSerializable, match="positional argument 0"):
        anytask_backend.client.submit(tasks.echo, object())
    with pytest.raises(NotSerializable, match="keyword argument 'value'"):
        anytask_backend.client.submit(tasks.echo, value={1, 2})


def test_non_module_level_functions_are_rejected(anytask_backend: BackendUnderTest) -> None:
    def nested(x: int) -> int:
        return x

    with pytest.raises(InvalidTask, match="module level"):
        anytask.task(nested)
    with pytest.raises(InvalidTask, match="lambda"):
        anytask.task(lambda: 1)
    with pytest.raises(InvalidTask, match="not a task"):
        anytask_backend.client.submit(nested, 1)  # type: ignore[arg-type]


_OPTION_FOR: dict[Feature, dict[str, Any]] = {
    Feature.RETRIES: {"retries": 1},
    Feature.TIMEOUT: {"timeout": 5},
    Feature.DELAY: {"delay": 1},
    Feature.PRIORITY: {"priority": 5},
    Feature.RATE_LIMIT: {"rate_limit": "10/s"},
    Feature.UNIQUE: {"unique_key": "k"},
    Feature.RESULT_TTL: {"result_ttl": 60},
}


def test_unsupported_options_raise(anytask_backend: BackendUnderTest) -> None:
    caps = anytask_backend.capabilities
    refused = [f for f in _OPTION_FOR if not caps.supports(f)]
    if not caps.supports(Feature.ASYNC_TASKS):
        refused.append(Feature.ASYNC_TASKS)
    if not caps.supports(Feature.CANCEL):
        h = anytask_backend.client.submit(tasks.add, 1, 2)
        with pytest.raises(UnsupportedFeature, match="cancel"):
            h.cancel()
        refused.append(Feature.CANCEL)
    if not refused:
        pytest.skip(f"{anytask_backend.case.id} declares every submit option supported")
    for feature in refused:
        if feature is Feature.CANCEL:
            continue
        t = tasks.async_add if feature is Feature.ASYNC_TASKS else tasks.add.using(**_OPTION_FOR[feature])
        with pytest.raises(UnsupportedFeature) as ei:
            anytask_backend.client.submit(t, 1, 2)
        assert feature.value in str(ei.value) and anytask_backend.client.backend in str(ei.value)


def test_async_twins(anytask_backend: BackendUnderTest) -> None:
    async def main() -> tuple[Any, Status, Status]:
        h = await anytask_backend.client.asubmit(tasks.add, 1, 1)
        first = await h.astatus()
        value = await h.aresult(timeout=RESULT_TIMEOUT)
        return value, first, await anytask_backend.client.astatus(h.id)

    value, first, last = asyncio.run(main())
    assert value == 2
    assert first is not Status.UNKNOWN
    assert last is Status.SUCCEEDED


def test_sync_api_inside_running_event_loop(anytask_backend: BackendUnderTest) -> None:
    async def main() -> Any:
        return anytask_backend.client.submit(tasks.add, 3, 4).result(timeout=RESULT_TIMEOUT)

    assert asyncio.run(main()) == 7


def test_async_task_function(anytask_backend: BackendUnderTest) -> None:
    needs(anytask_backend, Feature.ASYNC_TASKS)
    assert anytask_backend.client.submit(tasks.async_add, 4, 5).result(timeout=RESULT_TIMEOUT) == 9


def test_concurrent_submissions_complete_exactly_once(anytask_backend: BackendUnderTest) -> None:
    path = tmpfile(anytask_backend, "once")
    tokens = [f"t{i}" for i in range(200)]
    with ThreadPoolExecutor(8) as pool:
        handles = list(pool.map(lambda tok: anytask_backend.client.submit(tasks.record, path, tok), tokens))
    assert len({h.id for h in handles}) == 200
    results = [h.result(timeout=RESULT_TIMEOUT * 3) for h in handles]
    assert results == tokens
    ran = lines(path)
    assert sorted(ran) == sorted(tokens), f"{len(ran)} executions for 200 tasks"


def test_retries_count_retries(anytask_backend: BackendUnderTest) -> None:
    needs(anytask_backend, Feature.RETRIES)
    path = tmpfile(anytask_backend, "flaky")
    h = anytask_backend.client.submit(tasks.flaky.using(retries=2), path, 2)
    assert h.result(timeout=RESULT_TIMEOUT) == 3  # 1 run + 2 retries
    path2 = tmpfile(anytask_backend, "flaky")
    h2 = anytask_backend.client.submit(tasks.flaky.using(retries=1), path2, 5)
    with pytest.raises(TaskFailed):
        h2.result(timeout=RESULT_TIMEOUT)
    time.sleep(0.5)
    assert len(lines(path2)) == 2  # 1 run + 1 retry, then FAILED: no hidden default retries


def test_retries_are_not_counted_as_worker_deaths(anytask_backend: BackendUnderTest) -> None:
    """More retries than the delivery guard's max_deliveries (3): a retry ends in the worker (it raised),
    so it must clear the guard's count of unfinished starts; only deaths count (docs/reliability.md)."""
    needs(anytask_backend, Feature.RETRIES)
    path = tmpfile(anytask_backend, "flaky")
    h = anytask_backend.client.submit(tasks.flaky.using(retries=4), path, 4)
    assert h.result(timeout=RESULT_TIMEOUT * 2) == 5  # 1 run + 4 retries, none refused as poison


def test_no_retries_by_default(anytask_backend: BackendUnderTest) -> None:
    path = tmpfile(anytask_backend, "noretry")
    h = anytask_backend.client.submit(tasks.flaky, path, 1)
    with pytest.raises(TaskFailed):
        h.result(timeout=RESULT_TIMEOUT)
    time.sleep(1.0)
    assert len(lines(path)) == 1


def test_retrying_is_visible(anytask_backend: BackendUnderTest) -> None:
    needs(anytask_backend, Feature.RETRIES)
    path = tmpfile(anytask_backend, "retrying")
    h = anytask_backend.client.submit(tasks.flaky.using(retries=1, retry_backoff=2.0), path, 1)
    wait_for_status(anytask_backend, h.id, Status.RETRYING)
    assert h.result(timeout=RESULT_TIMEOUT) == 2


def test_timeout_stops_long_task(anytask_backend: BackendUnderTest) -> None:
    needs(anytask_backend, Feature.TIMEOUT)
    h = anytask_backend.client.submit(tasks.sleep.using(timeout=1), 10.0)
    t0 = time.monotonic()
    with pytest.raises(TaskFailed):
        h.result(timeout=RESULT_TIMEOUT)
    assert time.monotonic() - t0 < 9.0


def test_progress_is_readable_while_running(anytask_backend: BackendUnderTest) -> None:
    needs(anytask_backend, Feature.PROGRESS)
    h = anytask_backend.client.submit(tasks.with_progress, 4, 0.5)
    deadline = time.monotonic() + 15
    seen = None
    while time.monotonic() < deadline and not seen:
        p = h.progress()
        if p and p.get("done", 0) >= 1 and h.status() is Status.RUNNING:
            seen = p
        time.sleep(0.05)
    assert seen is not None and seen["total"] == 4 and seen["stage"] == "step"
    assert h.result(timeout=RESULT_TIMEOUT) == 4
    assert h.progress() == {"done": 4, "total": 4, "stage": "step"}


# -- scheduling, priority, cancel, rate limit, unique keys, result TTL -------------------------


def needs_own_worker(b: BackendUnderTest) -> None:
    if not b.capabilities.needs_worker:
        pytest.skip(f"{b.case.id} runs tasks in-process: no worker to hold back")


@contextlib.contextmanager
def side_queue(b: BackendUnderTest, name: str) -> Iterator[str]:
    """A queue no running worker consumes, purged before and after."""
    queue = f"{name}{uuid.uuid4().hex[:6]}"
    b.client.adapter.purge([queue])
    try:
        yield queue
    finally:
        b.client.adapter.purge([queue])


def test_delay_is_scheduled_then_runs(anytask_backend: BackendUnderTest) -> None:
    needs(anytask_backend, Feature.DELAY)
    t0 = time.time()
    h = anytask_backend.client.submit(tasks.record_time.using(delay=2), tmpfile(anytask_backend, "delay"), "d")
    assert h.status() is Status.SCHEDULED
    started = h.result(timeout=RESULT_TIMEOUT)
    assert started - t0 >= 1.9, f"started {started - t0:.2f}s after submit, asked 2s"
    at = datetime.now(timezone.utc) + timedelta(seconds=2)
    t1 = time.time()
    h2 = anytask_backend.client.submit(tasks.record_time.using(at=at), tmpfile(anytask_backend, "at"), "a")
    assert h2.status() is Status.SCHEDULED
    assert h2.result(timeout=RESULT_TIMEOUT) - t1 >= 1.9


def test_priority_orders_waiting_tasks(anytask_backend: BackendUnderTest) -> None:
    needs(anytask_backend, Feature.PRIORITY)
    needs_own_worker(anytask_backend)
    path = tmpfile(anytask_backend, "prio")
    with side_queue(anytask_backend, "prio") as q:
        handles = [anytask_backend.client.submit(tasks.record.using(queue=q, priority=1), path, f"low{i}")
                   for i in range(4)]
        handles += [anytask_backend.client.submit(tasks.record.using(queue=q, priority=8), path, f"high{i}")
                    for i in range(4)]
        with WorkerProcess(anytask_backend.url, queues=(q,), concurrency=1):
            for h in handles:
                h.result(timeout=RESULT_TIMEOUT * 2)
    order = lines(path)
    assert sorted(order) == sorted([f"low{i}" for i in range(4)] + [f"high{i}" for i in range(4)])
    assert all(t.startswith("high") for t in order[:4]), f"execution order {order}"


def test_cancel_before_start_never_runs(anytask_backend: BackendUnderTest) -> None:
    needs(anytask_backend, Feature.CANCEL)
    needs_own_worker(anytask_backend)
    path = tmpfile(anytask_backend, "cancel")
    with side_queue(anytask_backend, "cancel") as q:
        h = anytask_backend.client.submit(tasks.record.using(queue=q), path, "cancelled")
        res = h.cancel()
        assert res.outcome is CancelOutcome.CANCELLED_BEFORE_START and res.cancelled
        assert h.status() is Status.CANCELLED
        with WorkerProcess(anytask_backend.url, queues=(q,), concurrency=1):
            sentinel = anytask_backend.client.submit(tasks.record.using(queue=q), path, "sentinel")
            assert sentinel.result(timeout=RESULT_TIMEOUT * 2) == "sentinel"
            time.sleep(0.5)
        assert lines(path) == ["sentinel"]
        assert h.status() is Status.CANCELLED
        with pytest.raises(TaskCancelled):
            h.result(timeout=1)
        assert h.cancel().outcome is CancelOutcome.ALREADY_FINISHED


def test_cancel_while_running_says_what_happened(anytask_backend: BackendUnderTest) -> None:
    needs(anytask_backend, Feature.CANCEL)
    path = tmpfile(anytask_backend, "cancel-running")
    h = anytask_backend.client.submit(tasks.slow_record, path, 3.0)
    wait_for_status(anytask_backend, h.id, Status.RUNNING)
    res = h.cancel()
    if res.outcome is CancelOutcome.TERMINATED_WHILE_RUNNING:
        wait_for_status(anytask_backend, h.id, Status.CANCELLED, timeout=10)
        with pytest.raises(TaskCancelled):
            h.result(timeout=RESULT_TIMEOUT)
        time.sleep(3.5)
        assert lines(path) == ["start"], "a task reported terminated went on running"
        assert h.status() is Status.CANCELLED
    else:
        assert res.outcome is CancelOutcome.NOT_INTERRUPTIBLE, res
        assert h.result(timeout=RESULT_TIMEOUT) == "finished"
        assert lines(path) == ["start", "end"]


def test_rate_limit_is_observed(anytask_backend: BackendUnderTest) -> None:
    needs(anytask_backend, Feature.RATE_LIMIT)
    n, per_second = 20, 5
    path = tmpfile(anytask_backend, "rate")
    limited = tasks.record_time.using(rate_limit=f"{per_second}/s")
    handles = [anytask_backend.client.submit(limited, path, f"r{i}") for i in range(n)]
    starts = sorted(h.result(timeout=RESULT_TIMEOUT * 2) for h in handles)
    span = starts[-1] - starts[0]
    observed = (n - 1) / span if span > 0 else float("inf")
    # N per period: a sliding window gives <= N/s; fixed windows may burst to 2N across a boundary.
    assert observed <= 2 * per_second, f"{observed:.1f} starts/s for a limit of {per_second}/s"
    assert observed >= per_second / 4, f"only {observed:.2f} starts/s: the limiter is far too slow"


def test_unique_key_returns_the_first_handle(anytask_backend: BackendUnderTest) -> None:
    needs(anytask_backend, Feature.UNIQUE)
    key = f"k-{uuid.uuid4().hex}"
    path = tmpfile(anytask_backend, "unique")
    t = tasks.record.using(unique_key=key)
    with ThreadPoolExecutor(8) as pool:
        handles = list(pool.map(lambda i: anytask_backend.client.submit(t, path, f"u{i}"), range(10)))
    assert len({h.id for h in handles}) == 1
    first = handles[0].result(timeout=RESULT_TIMEOUT)
    again = anytask_backend.client.submit(t, path, "later")
    assert again.id == handles[0].id and again.result(timeout=RESULT_TIMEOUT) == first
    other = anytask_backend.client.submit(tasks.record.using(unique_key=key + "-other"), path, "other")
    assert other.id != handles[0].id and other.result(timeout=RESULT_TIMEOUT) == "other"
    time.sleep(0.5)
    assert sorted(lines(path)) == sorted([first, "other"])


def test_result_ttl_expires_the_record(anytask_backend: BackendUnderTest) -> None:
    needs(anytask_backend, Feature.RESULT_TTL)
    h = anytask_backend.client.submit(tasks.add.using(result_ttl=2), 1, 1)
    assert h.result(timeout=RESULT_TIMEOUT) == 2
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and h.status() is not Status.UNKNOWN:
        time.sleep(0.25)
    assert h.status() is Status.UNKNOWN, "the record outlived its result_ttl"
    keep = anytask_backend.client.submit(tasks.add.using(result_ttl=60), 2, 2)
    assert keep.result(timeout=RESULT_TIMEOUT) == 4
    time.sleep(2.5)
    assert keep.status() is Status.SUCCEEDED


# -- bad input (issue 7): the cases live in bad_input.py ------------------------------------------
from .bad_input import *  # noqa: E402,F403


# -- periodic tasks (anytask.periodic + --beat): the cases live in conformance_periodic.py ------------
from .conformance_periodic import *  # noqa: E402,F403


# -- canvas (chain, group, chord): the cases live in conformance_canvas.py --------------------------------
from .conformance_canvas import *  # noqa: E402,F403

__all__ = [name for name in list(globals()) if name.startswith("test_")]
