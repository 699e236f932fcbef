"""Conformance cases for bad input (issue 7): each asserts the exact error type and message.

Imported by :mod:`anytask.testing.conformance`, so every case runs on every selected backend with
its real worker. Broker-independent misuse (lambdas, URLs, missing extras, a dead broker) is tested
in tests/test_bad_input*.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ..facade.capabilities import Feature
from ..facade.client import Client, supporting_backends
from ..facade.errors import NotSerializable, PayloadTooLarge, TaskFailed, UnsupportedFeature
from ..facade.serialization import DEFAULT_MAX_PAYLOAD
from ..facade.status import Status
from ..facade.task import Task
from . import tasks
from .plugin import BackendUnderTest

RESULT_TIMEOUT = 30.0
_ENQUEUE_METHODS = ("submit", "asubmit", "claim_unique")
_JSON_ADVICE = ("anytask sends only JSON on every backend: pass plain dicts, lists, str, int, float, bool or "
                "None (e.g. an id instead of an object, an ISO string instead of a datetime).")


@contextlib.contextmanager
def enqueue_calls(client: Client) -> Iterator[list[str]]:
    """Record every call that could write to the broker (the real adapter still runs)."""
    calls: list[str] = []
    adapter = client.adapter
    for name in _ENQUEUE_METHODS:
        original = getattr(adapter, name)

        def spy(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kwargs)

        setattr(adapter, name, spy)
    try:
        yield calls
    finally:
        for name in _ENQUEUE_METHODS:
            delattr(adapter, name)


def _with_param(url: str, param: str) -> str:
    return url + ("&" if "?" in url else "?") + param


def _still_serves(b: BackendUnderTest) -> None:
    """The worker survived the bad message: a plain task still runs."""
    assert b.client.submit(tasks.add, 40, 2).result(timeout=RESULT_TIMEOUT) == 42


def _stays(b: BackendUnderTest, task_id: str, status: Status, seconds: float = 1.0) -> None:
    """``status`` holds for ``seconds``: not retried behind the client's back, not re-queued."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert b.client.status(task_id) is status
        time.sleep(0.1)


def test_bad_input_non_json_argument_enqueues_nothing(anytask_backend: BackendUnderTest) -> None:
    b = anytask_backend
    unique = b.capabilities.supports(Feature.UNIQUE)
    key = f"bad-json-{uuid.uuid4().hex}"
    t = tasks.echo.using(unique_key=key) if unique else tasks.echo
    with enqueue_calls(b.client) as calls:
        with pytest.raises(NotSerializable) as ei:
            b.client.submit(t, object())
        assert str(ei.value) == (
            "positional argument 0 of task 'anytask.testing.tasks.echo' is not JSON-serialisable "
            "(builtins.object: Object of type object is not JSON serializable). " + _JSON_ADVICE)
        with pytest.raises(NotSerializable) as ei:
            asyncio.run(b.client.asubmit(t, value={1, 2}))
        assert str(ei.value).startswith("keyword argument 'value' of task 'anytask.testing.tasks.echo' is not "
                                        "JSON-serialisable (builtins.set: Object of type set is not JSON serializable)")
        with pytest.raises(NotSerializable, match=r"^positional argument 0 .*\(builtins.float: Out of range float"):
            b.client.submit(t, float("nan"))
        assert calls == [], f"a refused submit reached the adapter: {calls}"
    if unique:  # no claim was left behind: the same key enqueues afresh
        assert b.client.submit(t, "fine").result(timeout=RESULT_TIMEOUT) == "fine"


def test_bad_input_payload_over_the_limit_enqueues_nothing(anytask_backend: BackendUnderTest) -> None:
    b = anytask_backend
    big = "x" * DEFAULT_MAX_PAYLOAD  # JSON [["x..."],{}]: 9 bytes over the default
    with enqueue_calls(b.client) as calls:
        with pytest.raises(PayloadTooLarge) as ei:
            b.client.submit(tasks.echo, big)
        assert str(ei.value) == (
            f"the arguments of task 'anytask.testing.tasks.echo' are {DEFAULT_MAX_PAYLOAD + 9} bytes of JSON, "
            f"over the limit of {DEFAULT_MAX_PAYLOAD} bytes; pass a reference instead (a file path, an "
            "object-store key, a database id), or raise the limit with ?max_payload=<bytes> in the URL or "
            "connect(url, max_payload=<bytes>) (0: no limit)")
        assert calls == []
    for client in (Client(_with_param(b.url, "max_payload=1000")), Client(b.url, max_payload=1000)):
        with client, enqueue_calls(client) as calls:
            with pytest.raises(PayloadTooLarge, match="are 1009 bytes of JSON, over the limit of 1000 bytes"):
                client.submit(tasks.echo, "y" * 1000)
            with pytest.raises(PayloadTooLarge, match="over the limit of 1000 bytes"):
                asyncio.run(client.asubmit(tasks.echo, value="y" * 1000))
            assert calls == []
            assert client.submit(tasks.echo, "y" * 900).result(timeout=RESULT_TIMEOUT) == "y" * 900


def test_bad_input_non_json_return_fails_the_task_once(anytask_backend: BackendUnderTest) -> None:
    b = anytask_backend
    h = b.client.submit(tasks.bad_return)
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=RESULT_TIMEOUT)
    assert ei.value.exc_type == "anytask.facade.errors.NotSerializable"
    assert ei.value.message == (
        "return value of task 'anytask.testing.tasks.bad_return' is not JSON-serialisable "
        "(builtins.set: Object of type set is not JSON serializable). " + _JSON_ADVICE)
    info = h.get()
    assert info.status is Status.FAILED and info.attempts in (None, 1), info
    _stays(b, h.id, Status.FAILED)
    _still_serves(b)


def test_bad_input_unknown_task_name_is_failed(anytask_backend: BackendUnderTest) -> None:
    b = anytask_backend
    if not b.capabilities.needs_worker:
        pytest.skip(f"{b.case.id} runs the submitted Task object in-process: no worker looks its name up")
    ghost: Task[Any, Any] = Task(func=tasks.add.func, name="anytask.testing.nowhere.ghost")  # not in the worker
    h = b.client.submit(ghost, 1, 2)
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=RESULT_TIMEOUT)
    assert ei.value.exc_type == "anytask.facade.errors.TaskNotRegistered", ei.value.error
    assert "'anytask.testing.nowhere.ghost' is not registered" in ei.value.message
    assert "--tasks" in ei.value.message, ei.value.message
    _stays(b, h.id, Status.FAILED)
    _still_serves(b)


def test_bad_input_exception_class_unknown_to_the_client(anytask_backend: BackendUnderTest) -> None:
    b = anytask_backend
    h = b.client.submit(tasks.fail_unimportable, 7, "disk full")
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=RESULT_TIMEOUT)
    err = ei.value
    assert err.exc_type == "anytask_worker_only.errors.WorkerOnlyError", err.error
    assert err.message == "code 7: disk full"
    assert str(err) == f"task {h.id} failed: anytask_worker_only.errors.WorkerOnlyError: code 7: disk full"
    assert "fail_unimportable" in err.traceback and "WorkerOnlyError" in err.traceback, err.traceback
    assert h.status() is Status.FAILED
    _still_serves(b)


def test_bad_input_async_task_where_unsupported(anytask_backend: BackendUnderTest) -> None:
    b = anytask_backend
    fs = b.capabilities.get(Feature.ASYNC_TASKS)
    if fs.supported:
        pytest.skip(f"{b.case.id} runs async tasks (test_async_task_function)")
    can = supporting_backends(Feature.ASYNC_TASKS)
    assert can, "no installed backend runs async tasks"
    with enqueue_calls(b.client) as calls:
        with pytest.raises(UnsupportedFeature) as ei:
            b.client.submit(tasks.async_add, 1, 2)
        assert calls == []
    e = ei.value
    assert (e.backend, e.feature, e.supported_by) == (
        b.client.backend, "async_tasks (task anytask.testing.tasks.async_add)", tuple(can))
    assert str(e) == (f"backend {b.client.backend!r} does not support async_tasks (task "
                      f"anytask.testing.tasks.async_add): {fs.how} (supported by: {', '.join(can)})")


__all__ = [name for name in list(globals()) if name.startswith("test_")]
