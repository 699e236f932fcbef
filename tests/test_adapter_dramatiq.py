"""Dramatiq adapter: the library's traps and the native details, against real brokers and workers.

Run with ``ANYTASK_TEST_BACKENDS=dramatiq+redis,dramatiq+amqp`` (other selected cases are skipped).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pika  # type: ignore[import-untyped]
import pytest
import redis

import anytask
from anytask import Status
from anytask.adapters import dramatiq as adapter_mod
from anytask.adapters.dramatiq import DramatiqAdapter
from anytask.facade.adapter import WorkerOptions
from anytask.facade.errors import BrokerUnavailable, TaskFailed
from anytask.facade.state import DEFAULT_TTL
from anytask.facade.url import parse_url
from anytask.testing import tasks
from anytask.testing.plugin import BackendUnderTest
from anytask.testing.workers import WorkerProcess

RESULT_TIMEOUT = 30.0


@pytest.fixture
def backend(anytask_backend: BackendUnderTest) -> BackendUnderTest:
    if not anytask_backend.case.id.startswith("dramatiq+"):
        pytest.skip("Dramatiq adapter tests")
    return anytask_backend


def adapter_of(b: BackendUnderTest) -> DramatiqAdapter:
    a = b.client.adapter
    assert isinstance(a, DramatiqAdapter)
    return a


@pytest.fixture
def probe_queue(backend: BackendUnderTest) -> Iterator[str]:
    """A queue no worker consumes, to look at enqueued messages as Dramatiq stores them."""
    q = f"probe_{uuid.uuid4().hex[:8]}"
    yield q
    a = adapter_of(backend)
    a.purge([q])
    if a.url.transport == "amqp":  # RabbitMQ keeps declared queues: delete the probe's three
        conn = pika.BlockingConnection(adapter_mod._pika_parameters(a.url.broker_url, 5.0))
        try:
            ch = conn.channel()
            for name in (a.native_queue(q), a.native_queue(q) + ".DQ", a.native_queue(q) + ".XQ"):
                ch.queue_delete(name)
        finally:
            conn.close()


def raw_messages(b: BackendUnderTest, native_queue: str) -> list[dict[str, Any]]:
    """The messages of a native queue, decoded from the broker (Redis hash / RabbitMQ basic_get)."""
    a = adapter_of(b)
    if a.url.transport == "redis":
        r = redis.Redis.from_url(a.url.broker_url)
        return [json.loads(v) for v in r.hvals(f"dramatiq:{native_queue}.msgs")]
    conn = pika.BlockingConnection(adapter_mod._pika_parameters(a.url.broker_url, 5.0))
    try:
        ch = conn.channel()
        out: list[dict[str, Any]] = []
        while True:
            method, _, body = ch.basic_get(native_queue, auto_ack=True)
            if method is None:
                return out
            out.append(json.loads(body))
    finally:
        conn.close()


def wait_status(b: BackendUnderTest, task_id: str, wanted: Status, timeout: float = 15.0) -> list[Status]:
    seen: list[Status] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = b.client.status(task_id)
        if not seen or seen[-1] is not s:
            seen.append(s)
        if s is wanted:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"{wanted} not seen within {timeout}s; saw {seen}")


# -- native messages --------------------------------------------------------------------------------


def test_message_is_native_with_facade_id_and_millisecond_options(backend: BackendUnderTest, probe_queue: str) -> None:
    a = adapter_of(backend)
    h = backend.client.submit(tasks.add.using(queue=probe_queue, retries=2, retry_backoff=0.25, timeout=1.5), 1, 2)
    plain = backend.client.submit(tasks.add.using(queue=probe_queue), 3, 4)
    assert h.status() is Status.QUEUED
    msgs = {m["message_id"]: m for m in raw_messages(backend, a.native_queue(probe_queue))}
    assert set(msgs) == {h.id, plain.id}  # the facade's id is Dramatiq's message_id
    m = msgs[h.id]
    assert m["actor_name"] == "anytask.testing.tasks.add"  # what Dramatiq's own tooling shows
    assert m["queue_name"] == a.native_queue(probe_queue)
    assert m["args"] == [1, 2] and m["kwargs"] == {}
    # seconds -> milliseconds, per message (so .using() overrides the actor's declaration)
    assert m["options"]["max_retries"] == 2
    assert m["options"]["min_backoff"] == 250
    assert m["options"]["time_limit"] == 1500
    # no hidden defaults: 0 retries (Dramatiq: 20), no time limit (Dramatiq: 10 minutes)
    assert msgs[plain.id]["options"]["max_retries"] == 0
    assert "time_limit" not in msgs[plain.id]["options"]


def test_delay_uses_the_native_delay_queue(backend: BackendUnderTest, probe_queue: str) -> None:
    a = adapter_of(backend)
    t0 = time.time()
    h = backend.client.submit(tasks.add.using(queue=probe_queue, delay=30), 1, 1)
    assert h.status() is Status.SCHEDULED
    assert raw_messages(backend, a.native_queue(probe_queue)) == []
    delayed = raw_messages(backend, a.native_queue(probe_queue) + ".DQ")
    assert [m["message_id"] for m in delayed] == [h.id]
    eta_ms = delayed[0]["options"]["eta"]
    assert abs(eta_ms / 1000 - (t0 + 30)) < 2.0


def test_delayed_task_runs_after_its_delay(backend: BackendUnderTest) -> None:
    t0 = time.monotonic()
    h = backend.client.submit(tasks.add.using(delay=1.5), 2, 2)
    assert h.status() is Status.SCHEDULED
    seen = wait_status(backend, h.id, Status.SUCCEEDED, timeout=RESULT_TIMEOUT)
    assert time.monotonic() - t0 >= 1.4
    assert seen[0] is Status.SCHEDULED and Status.UNKNOWN not in seen
    assert h.result(timeout=1) == 4


# -- results, failures, TTLs ------------------------------------------------------------------------


def result_key(b: BackendUnderTest, task_id: str, queue: str = "default",
               actor: str = "anytask.testing.tasks.fail") -> str:
    return f"{adapter_mod.RESULT_NAMESPACE}:{adapter_of(b).native_queue(queue)}:{actor}:{task_id}"


def test_failure_keeps_module_path_where_dramatiq_keeps_only_the_name(backend: BackendUnderTest) -> None:
    a = adapter_of(backend)
    h = backend.client.submit(tasks.fail, "kaput")
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=RESULT_TIMEOUT)
    assert ei.value.exc_type == "anytask.testing.tasks.TaskBoom"
    assert 'raise TaskBoom(message)' in ei.value.traceback
    # Dramatiq's Results middleware stores the exception as a JSON dict with the bare class name
    # (in after_nack, a moment after anytask recorded FAILED)
    deadline = time.monotonic() + 5
    while (raw := a.redis.lindex(result_key(backend, h.id), 0)) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert raw is not None
    stored = json.loads(raw)
    assert stored["exn"] == {"type": "TaskBoom", "msg": "kaput"}


def test_results_and_states_live_as_long_as_the_facade_ttl(backend: BackendUnderTest) -> None:
    a = adapter_of(backend)
    h = backend.client.submit(tasks.add, 5, 5)
    assert h.result(timeout=RESULT_TIMEOUT) == 10
    pttl = a.redis.pttl(result_key(backend, h.id, actor="anytask.testing.tasks.add"))
    assert 600_000 < pttl <= DEFAULT_TTL * 1000  # Dramatiq's default result_ttl is 10 minutes
    state_ttl = a.redis.ttl(adapter_mod.STATE_PREFIX + h.id)
    assert DEFAULT_TTL - 60 < state_ttl <= DEFAULT_TTL
    # reading twice does not consume Dramatiq's result
    assert backend.client.get(h.id).value == 10 and backend.client.get(h.id).value == 10


def test_attempts_are_counted_across_native_retries(backend: BackendUnderTest) -> None:
    path = os.path.join(backend.tmp, f"dr-flaky-{uuid.uuid4().hex}.txt")
    h = backend.client.submit(tasks.flaky.using(retries=2), path, 2)
    assert h.result(timeout=RESULT_TIMEOUT) == 3
    info = h.get()
    assert info.attempts == 3 and info.status is Status.SUCCEEDED


def test_message_for_an_actor_the_worker_lacks_is_failed_not_queued_forever(backend: BackendUnderTest) -> None:
    ghost = anytask.Task(func=tasks.add.func, name="anytask.testing.tasks.not_in_the_worker")
    h = backend.client.submit(ghost, 1, 2)
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=RESULT_TIMEOUT)
    assert ei.value.exc_type == "dramatiq.errors.ActorNotFound"
    assert "not_in_the_worker" in ei.value.message


def test_timed_out_blocking_call_is_failed_at_its_deadline(backend: BackendUnderTest) -> None:
    # TimeLimit cannot interrupt time.sleep (a C call); the watchdog reports the deadline anyway.
    h = backend.client.submit(tasks.sleep.using(timeout=1), 4.0, "late")
    t0 = time.monotonic()
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=RESULT_TIMEOUT)
    assert time.monotonic() - t0 < 3.5
    assert ei.value.exc_type == "dramatiq.middleware.time_limit.TimeLimitExceeded"
    assert "time limit of 1s exceeded" in ei.value.message
    time.sleep(4.0)  # the thread is freed when the sleep returns: the late value never wins
    assert h.status() is Status.FAILED


# -- the worker -------------------------------------------------------------------------------------


def test_worker_broker_neutralises_dramatiq_defaults(backend: BackendUnderTest, monkeypatch: pytest.MonkeyPatch) -> None:
    import dramatiq
    from dramatiq.middleware import AsyncIO, Retries, TimeLimit
    from dramatiq.results import Results

    # the traps, as Dramatiq ships them
    assert Retries().max_retries == 20
    assert TimeLimit().time_limit == 600_000
    assert Results(backend=None).result_ttl == 600_000  # type: ignore[no-untyped-call]

    monkeypatch.setenv(adapter_mod.ENV_URL, backend.url)
    monkeypatch.setenv(adapter_mod.ENV_MODULES, "anytask.testing.tasks")
    monkeypatch.setenv(adapter_mod.ENV_TASKS, "anytask.testing.tasks.add,anytask.testing.tasks.async_add")
    monkeypatch.setenv(adapter_mod.ENV_QUEUES, "default,other")
    previous = dramatiq.get_broker() if dramatiq.broker.global_broker is not None else None
    try:
        adapter_mod.worker_broker()
        broker = dramatiq.get_broker()
        mw: dict[type, Any] = {type(m): m for m in broker.middleware}
        assert mw[Retries].max_retries == 0
        assert mw[TimeLimit].time_limit == math.inf
        assert mw[Results].result_ttl == DEFAULT_TTL * 1000
        assert AsyncIO in mw
        names = [type(m).__name__ for m in broker.middleware]
        assert names.index("Retries") < names.index("StateMiddleware") < names.index("Results")
        a = adapter_of(backend)
        actor = broker.get_actor("anytask.testing.tasks.add")
        assert actor.queue_name == a.native_queue("default")
        assert actor.options["max_retries"] == 0 and actor.options["store_results"] is True
        assert "time_limit" not in actor.options
        assert {a.native_queue("default"), a.native_queue("other")} <= broker.get_declared_queues()
        # an async task is a native async actor (Dramatiq wrapped it with async_to_sync)
        async_actor = broker.get_actor("anytask.testing.tasks.async_add")
        assert inspect.iscoroutinefunction(async_actor.fn.__wrapped__)  # type: ignore[attr-defined]
        broker.close()
    finally:
        dramatiq.set_broker(previous)  # type: ignore[arg-type]


def test_worker_command_is_the_dramatiq_cli() -> None:
    a = DramatiqAdapter(parse_url("dramatiq+redis://127.0.0.1:6379/5?prefix=p_"))
    tlist: list[anytask.Task[Any, Any]] = [tasks.add, tasks.async_add]
    argv, env = a.worker_command(tlist, WorkerOptions(concurrency=3, queues=("default", "fast"), extra=("-v",)))
    assert argv[1:4] == ["-m", "dramatiq", "anytask.adapters.dramatiq:worker_broker"]
    assert argv[argv.index("--processes") + 1] == "1" and argv[argv.index("--threads") + 1] == "3"
    assert argv[argv.index("--queues") + 1:] == ["p_default", "p_fast"]
    assert "-v" in argv
    assert env[adapter_mod.ENV_TASKS] == "anytask.testing.tasks.add,anytask.testing.tasks.async_add"
    _, tuned = a.worker_command(tlist, WorkerOptions(concurrency=3, config="tuned"))
    assert tuned["dramatiq_worker_timeout"] == "100" and tuned["dramatiq_queue_prefetch"] == "12"
    _, reliable = a.worker_command(tlist, WorkerOptions(concurrency=3, config="reliable"))
    assert reliable["dramatiq_queue_prefetch"] == "1"


def test_worker_serves_other_queue_and_sigterm_finishes_running_task(backend: BackendUnderTest) -> None:
    worker = WorkerProcess(backend.url, concurrency=2, queues=("other",), config="tuned").start()
    try:
        h = backend.client.submit(tasks.add.using(queue="other"), 20, 1)  # no actor declares "other"
        assert h.result(timeout=60) == 21
        slow = backend.client.submit(tasks.sleep.using(queue="other"), 2.0, "finished")
        wait_status(backend, slow.id, Status.RUNNING)
        assert worker.proc is not None
        t0 = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        code = worker.proc.wait(20)
        assert code == 0, worker.output()
        assert time.monotonic() - t0 < 15
        # Dramatiq lets the running actor finish before the process exits
        assert slow.get().status is Status.SUCCEEDED and slow.get().value == "finished"
    finally:
        worker.stop()


# -- broker down ------------------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(50)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()
    for c in held:
        c.close()


def down_urls(b: BackendUnderTest, port: int) -> list[str]:
    a = adapter_of(b)
    if a.url.transport == "redis":
        return [f"dramatiq+redis://127.0.0.1:{port}/5?timeout=1"]
    return [f"dramatiq+amqp://guest:guest@127.0.0.1:{port}/?result={a.result_url}&timeout=1",
            f"dramatiq+amqp://guest:guest@127.0.0.1:5672/?result=redis://127.0.0.1:{port}/6&timeout=1"]


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_broker_down_raises_within_the_timeout(backend: BackendUnderTest, silent_port: int, kind: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    port = 1 if kind == "refused" else silent_port
    fixed = uuid.uuid4()
    monkeypatch.setattr(uuid, "uuid4", lambda: fixed)
    for url in down_urls(backend, port):
        with anytask.connect(url) as c:
            t0 = time.monotonic()
            with pytest.raises(BrokerUnavailable) as ei:
                c.submit(tasks.add, 1, 2)
            assert time.monotonic() - t0 < 2.0, url
            assert "guest:guest" not in str(ei.value)
            with pytest.raises(BrokerUnavailable):
                c.adapter.ping()
    # nothing half-written: the state record written before the failed enqueue was removed
    assert backend.client.status(fixed.hex) is Status.UNKNOWN
