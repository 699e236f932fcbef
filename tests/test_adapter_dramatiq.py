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
from anytask.testing.backends import AMQP, REDIS
from anytask.testing.conformance import wait_for_status as wait_status
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
    assert ei.value.exc_type == "anytask.facade.errors.TaskNotRegistered"  # ActorNotFound, named the same everywhere
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
    a = DramatiqAdapter(parse_url(f"dramatiq+redis://{REDIS}/5?prefix=p_"))
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


# -- issue 5 features: priority, cancel, rate limit, unique keys, result TTL, progress ---------------


def state_ttl(b: BackendUnderTest, task_id: str) -> int:
    return int(adapter_of(b).redis.ttl(adapter_mod.STATE_PREFIX + task_id))


def unique_ttl(b: BackendUnderTest, key: str) -> int:
    return int(adapter_of(b).redis.ttl(f"{adapter_mod.STATE_PREFIX}unique:{key}"))


def test_capabilities_are_declared_per_broker() -> None:
    from anytask import Feature
    from anytask.facade.errors import UnsupportedFeature

    r = anytask.connect(f"dramatiq+redis://{REDIS}/5")
    a = anytask.connect(f"dramatiq+amqp://{AMQP}/?result=redis://{REDIS}/6")
    try:
        assert type(r.adapter) is adapter_mod.DramatiqRedisAdapter
        assert type(a.adapter) is adapter_mod.DramatiqAmqpAdapter
        assert not r.capabilities.supports(Feature.PRIORITY) and a.capabilities.supports(Feature.PRIORITY)
        for f in (Feature.CANCEL, Feature.PROGRESS, Feature.RATE_LIMIT, Feature.UNIQUE, Feature.RESULT_TTL):
            assert r.capabilities.supports(f) and a.capabilities.supports(f)
        with pytest.raises(UnsupportedFeature, match="FIFO"):
            r.submit(tasks.add.using(priority=5), 1, 2)  # refused before anything is written
    finally:
        r.close()
        a.close()


def test_priority_is_rabbitmq_message_priority(backend: BackendUnderTest, probe_queue: str) -> None:
    a = adapter_of(backend)
    if a.url.transport != "amqp":
        pytest.skip("priority exists on RabbitMQ only")
    backend.client.submit(tasks.add.using(queue=probe_queue, priority=2), 1, 1)
    backend.client.submit(tasks.add.using(queue=probe_queue, priority=7), 2, 2)
    backend.client.submit(tasks.add.using(queue=probe_queue), 3, 3)
    conn = pika.BlockingConnection(adapter_mod._pika_parameters(a.url.broker_url, 5.0))
    try:
        ch = conn.channel()
        # the queue was declared with x-max-priority=9: a passive redeclare with it succeeds
        ch.queue_declare(a.native_queue(probe_queue), durable=True, arguments={
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": a.native_queue(probe_queue) + ".XQ",
            "x-max-priority": adapter_mod.MAX_PRIORITY})
        got = []
        while True:
            method, props, body = ch.basic_get(a.native_queue(probe_queue), auto_ack=True)
            if method is None:
                break
            got.append((props.priority, json.loads(body)["args"]))
    finally:
        conn.close()
    assert got == [(7, [2, 2]), (2, [1, 1]), (None, [3, 3])]  # RabbitMQ hands them out highest first


def test_queue_declared_without_priority_is_a_clear_configuration_error(backend: BackendUnderTest) -> None:
    from anytask.facade.errors import ConfigurationError

    a = adapter_of(backend)
    if a.url.transport != "amqp":
        pytest.skip("RabbitMQ queue arguments")
    q = f"legacy_{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(adapter_mod._pika_parameters(a.url.broker_url, 5.0))
    try:
        conn.channel().queue_declare(a.native_queue(q), durable=True, arguments={
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": a.native_queue(q) + ".XQ"})
        with pytest.raises(ConfigurationError, match="x-max-priority"):
            backend.client.submit(tasks.add.using(queue=q), 1, 2)
    finally:
        ch = conn.channel()
        for name in (a.native_queue(q), a.native_queue(q) + ".DQ", a.native_queue(q) + ".XQ"):
            ch.queue_delete(name)
        conn.close()


def test_cancelled_delayed_task_stays_cancelled_when_its_eta_comes(backend: BackendUnderTest) -> None:
    # The worker moves a due message from <queue>.DQ to <queue> and records SCHEDULED -> QUEUED: that
    # write must never turn a CANCELLED record back into QUEUED, and the message must be skipped.
    path = os.path.join(backend.tmp, f"dr-cancel-delay-{uuid.uuid4().hex}.txt")
    h = backend.client.submit(tasks.record.using(delay=1), path, "ran")
    assert h.status() is Status.SCHEDULED
    res = h.cancel()
    assert res.cancelled and res.status is Status.CANCELLED
    after = backend.client.submit(tasks.record.using(delay=1.5), path, "after")  # on the same delay queue
    assert after.result(timeout=RESULT_TIMEOUT) == "after"
    # consumed and skipped, not left behind: Dramatiq's Results stores None for a skipped message
    a = adapter_of(backend)
    deadline = time.monotonic() + 10
    while not a.redis.exists(result_key(backend, h.id, actor="anytask.testing.tasks.record")):
        assert time.monotonic() < deadline, "the cancelled message was not consumed"
        time.sleep(0.05)
    assert h.status() is Status.CANCELLED and "skipped" in h.get().note
    with open(path) as fh:
        assert fh.read().split() == ["after"]


def test_cancel_of_a_running_task_is_not_interruptible(backend: BackendUnderTest) -> None:
    from anytask import CancelOutcome

    h = backend.client.submit(tasks.sleep, 1.5, "done")
    wait_status(backend, h.id, Status.RUNNING)
    res = h.cancel()
    assert res.outcome is CancelOutcome.NOT_INTERRUPTIBLE and res.status is Status.RUNNING
    assert h.result(timeout=RESULT_TIMEOUT) == "done"


def test_rate_limited_message_waits_in_the_delay_queue_not_in_a_worker_slot(backend: BackendUnderTest) -> None:
    a = adapter_of(backend)
    path = os.path.join(backend.tmp, f"dr-rate-{uuid.uuid4().hex}.txt")
    limited = tasks.record.using(rate_limit="1/m")
    first = backend.client.submit(limited, path, "first")
    assert first.result(timeout=RESULT_TIMEOUT) == "first"
    second = backend.client.submit(limited, path, "second")
    # the worker took no slot for it: other tasks run while it waits, and it stays QUEUED
    for i in range(6):
        assert backend.client.submit(tasks.add, i, i).result(timeout=RESULT_TIMEOUT) == 2 * i
    time.sleep(1.0)
    assert second.status() is Status.QUEUED and second.get().started_at is None
    if a.url.transport == "redis":  # the re-enqueued message is in Dramatiq's delay queue, eta 1-2 min on
        r = redis.Redis.from_url(a.url.broker_url)
        delayed = [json.loads(v) for v in r.hvals(f"dramatiq:{a.native_queue('default')}.DQ.msgs")]
        etas = [m["options"]["eta"] / 1000 - time.time() for m in delayed if m["message_id"] == second.id]
        assert len(etas) == 1 and 30 < etas[0] < 125, etas  # wait + jitter of up to one slot (60 s)
    assert second.cancel().cancelled  # then the worker skips it when it comes back
    with open(path) as fh:
        assert fh.read().split() == ["first"]


def test_result_ttl_applies_to_the_native_result_and_the_record(backend: BackendUnderTest) -> None:
    a = adapter_of(backend)
    h = backend.client.submit(tasks.add.using(result_ttl=30), 2, 3)
    assert h.result(timeout=RESULT_TIMEOUT) == 5
    assert 20 < state_ttl(backend, h.id) <= 30
    pttl = a.redis.pttl(result_key(backend, h.id, actor="anytask.testing.tasks.add"))
    assert 20_000 < pttl <= 30_000  # Dramatiq's own Results TTL, from the message's result_ttl option
    plain = backend.client.submit(tasks.add, 1, 1)
    assert plain.result(timeout=RESULT_TIMEOUT) == 2
    assert state_ttl(backend, plain.id) > DEFAULT_TTL - 60


def test_unique_key_lives_as_long_as_the_record(backend: BackendUnderTest, probe_queue: str) -> None:
    key = f"dr-{uuid.uuid4().hex}"
    t = tasks.add.using(queue=probe_queue, unique_key=key, result_ttl=20)
    h = backend.client.submit(t, 1, 2)
    assert backend.client.submit(t, 5, 5).id == h.id
    # waiting: the key lives the record's lifetime (a week), not just result_ttl from submit
    assert unique_ttl(backend, key) > DEFAULT_TTL - 60
    assert h.cancel().cancelled
    # finished (here: cancelled): key and record expire together, result_ttl from now
    assert 10 < unique_ttl(backend, key) <= 20 and 10 < state_ttl(backend, h.id) <= 20
    assert backend.client.submit(t, 5, 5).id == h.id


def test_purge_drops_waiting_records_and_keeps_finished_ones(backend: BackendUnderTest, probe_queue: str) -> None:
    done = backend.client.submit(tasks.add.using(queue="default"), 1, 1)
    assert done.result(timeout=RESULT_TIMEOUT) == 2
    waiting = backend.client.submit(tasks.add.using(queue=probe_queue, unique_key=f"p-{uuid.uuid4().hex}"), 1, 2)
    cancelled = backend.client.submit(tasks.add.using(queue=probe_queue), 1, 3)
    cancelled.cancel()
    adapter_of(backend).purge([probe_queue])
    assert waiting.status() is Status.UNKNOWN  # its message is gone: it would otherwise wait forever
    assert cancelled.status() is Status.CANCELLED and done.status() is Status.SUCCEEDED


def test_progress_is_a_field_of_the_state_record(backend: BackendUnderTest) -> None:
    a = adapter_of(backend)
    h = backend.client.submit(tasks.with_progress, 2, 0.1)
    assert h.result(timeout=RESULT_TIMEOUT) == 2
    raw = a.redis.hget(adapter_mod.STATE_PREFIX + h.id, "progress")
    assert raw is not None and json.loads(raw) == {"done": 2, "total": 2, "stage": "step"}
    assert h.get().status is Status.SUCCEEDED  # the progress writes did not touch the status
