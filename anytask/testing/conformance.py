"""The conformance suite: every case runs against every selected backend, with real workers.

Cases skip only through declared capabilities (:func:`needs`), never by backend name.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import anytask
from anytask import Feature, Status
from anytask.facade.errors import (
    InvalidTask,
    NotSerializable,
    ResultTimeout,
    TaskFailed,
    UnknownTaskId,
    UnsupportedFeature,
)

from . import tasks
from .plugin import BackendUnderTest


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
    if not refused:
        pytest.skip(f"{anytask_backend.case.id} declares every submit option supported")
    for feature in refused:
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


__all__ = [name for name in list(globals()) if name.startswith("test_")]
