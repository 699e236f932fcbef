"""The Huey traps the adapter handles, against real storages and real ``anytask worker`` processes.

Runs for huey+sqlite and huey+redis (filtered by ANYTASK_TEST_BACKENDS when it is set). Every case uses
the URL parameter ``prefix=tha.`` so its queues and records never meet the conformance session's.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import anytask
from anytask import Feature, Status
from anytask.adapters.huey import HueyAdapter, JSONSerializer
from anytask.facade.capabilities import Support
from anytask.facade.adapter import WorkerOptions
from anytask.facade.errors import BrokerUnavailable, ConfigurationError, ResultTimeout, TaskFailed
from anytask.facade.url import parse_url
from anytask.testing import tasks
from anytask.testing.backends import REDIS, answers, workdir
from anytask.testing.workers import WorkerProcess

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE = __name__  # how the worker imports this module (PYTHONPATH=tests)
PREFIX = "tha."


# Tasks of this module: the worker imports it with --tasks (see _worker).
@anytask.task
def kw_echo(**kwargs: Any) -> Any:
    return kwargs


@anytask.task(name="huey_adapter_plain")
def plain_name() -> str:
    return "plain"


def _cases() -> list[tuple[str, str]]:
    cases = [("huey+sqlite", f"huey+sqlite:///{workdir()}/huey-adapter.db?prefix={PREFIX}"),
             ("huey+redis", f"huey+redis://{REDIS}/1?prefix={PREFIX}")]
    wanted = {s.strip() for s in os.environ.get("ANYTASK_TEST_BACKENDS", "").split(",") if s.strip()}
    return [c for c in cases if not wanted or c[0] in wanted]


def _worker(url: str, queue: str = "default", config: str = "defaults", extra: tuple[str, ...] = (),
            concurrency: int = 2) -> WorkerProcess:
    return WorkerProcess(url, tasks=("anytask.testing.tasks", MODULE), concurrency=concurrency, queues=(queue,),
                         config=config, extra=extra, env={"PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")})


def _ready(w: WorkerProcess, client: anytask.Client, queue: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert w.proc is not None and w.proc.poll() is None, w.output()
        h = client.submit(tasks.ping.using(queue=queue))
        try:
            if h.result(timeout=10) == "pong":
                return
        except ResultTimeout:
            continue
    raise AssertionError(f"worker on {queue} not ready:\n{w.output()}")


@pytest.fixture(scope="module", params=_cases(), ids=lambda c: c[0])
def hb(request: pytest.FixtureRequest) -> Iterator[tuple[anytask.Client, WorkerProcess]]:
    cid, url = request.param
    host, port = REDIS.rsplit(":", 1)
    if cid == "huey+redis" and not answers(host, int(port)):
        pytest.skip(f"no Redis at {REDIS}")
    client = anytask.connect(url)
    queues = ["default", "side", "idle", "term", "reliable"]
    client.adapter.purge(queues)
    w = _worker(url).start()
    try:
        _ready(w, client, "default")
        yield client, w
    finally:
        code = w.stop()
        client.adapter.purge(queues)
        client.close()
        assert code == 0, f"SIGTERM should stop the Huey consumer cleanly, got {code}:\n{w.output()}"


def huey_of(client: anytask.Client, queue: str = "default") -> Any:
    adapter = client.adapter
    assert isinstance(adapter, HueyAdapter)
    return adapter.huey(queue)


# -- wire format and names ---------------------------------------------------------------------------


def test_huey_message_round_trips_as_json() -> None:
    from huey.registry import Message
    from huey.utils import Error

    s = JSONSerializer()
    eta = datetime.datetime(2030, 1, 2, 3, 4, 5, 678)
    m = Message("id1", "pkg.mod.f", eta, 2, 1.5, None, (1, [2, {"a": None}]), {"k": "é"}, None, None, None,
                None, 0, None, 2)
    raw = s.serialize(m)
    assert raw.startswith(b'{"message":')  # JSON, not pickle
    back = s.deserialize(raw)
    assert back == m and isinstance(back.args, tuple) and back.eta == eta
    err = Error({"error": "ValueError('x')", "retries": 0, "traceback": "tb", "task_id": "id1"})
    assert s.deserialize(s.serialize(err)) == err
    # revocation data as Huey stores it: (datetime | None, bool)
    assert s.deserialize(s.serialize((eta, True))) == [eta, True]
    # a user's value is never interpreted, even if it looks like a tag
    assert s.deserialize(s.serialize({"huey.datetime": "2020-01-01"})) == {"huey.datetime": "2020-01-01"}
    with pytest.raises(TypeError, match="JSON"):
        s.serialize(object())


def test_wire_is_json_with_facade_id_and_anytask_name(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    client, _ = hb
    h = client.submit(tasks.add.using(queue="idle"), 1, 2)  # no worker consumes "idle"
    assert client.status(h.id) is Status.QUEUED
    raw = huey_of(client, "idle").storage.enqueued_items()
    docs = [json.loads(bytes(r)) for r in raw]
    mine = [d["message"] for d in docs if d["message"]["id"] == h.id]
    assert mine and mine[0]["name"] == "anytask.testing.tasks.add" and mine[0]["args"] == [1, 2]
    assert huey_of(client, "idle").name == PREFIX + "idle"
    client.adapter.purge(["idle"])


def test_native_registry_lists_the_anytask_names(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    client, w = hb
    assert client.submit(plain_name).result(timeout=30) == "plain"
    out = w.output()
    assert "+ anytask.testing.tasks.add" in out and "+ huey_adapter_plain" in out, out


def test_user_kwargs_named_like_huey_options_stay_user_kwargs(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    # huey's TaskWrapper.s() pops id/eta/delay/retries/retry_delay/priority/expires/timeout from kwargs.
    client, _ = hb
    kw = {"id": "mine", "eta": "e", "delay": 3, "retries": 5, "retry_delay": 1, "priority": 2,
          "expires": 9, "timeout": 7, "task": "t"}
    assert client.submit(kw_echo, **kw).result(timeout=30) == kw


# -- results and states -------------------------------------------------------------------------------


def test_results_are_peeked_never_popped(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    client, _ = hb
    h = client.submit(tasks.add, 2, 3)
    assert h.result(timeout=30) == 5
    huey = huey_of(client)
    # Huey's own result store has the value too (JSON), and reading with preserve keeps it.
    assert huey.result(h.id, preserve=True) == 5 and huey.result(h.id, preserve=True) == 5
    for _ in range(3):
        info = client.get(h.id)
        assert info.status is Status.SUCCEEDED and info.value == 5 and info.attempts == 1
        assert info.enqueued_at and info.started_at and info.finished_at
    n = client.submit(tasks.return_none)
    assert n.result(timeout=30) is None
    assert huey.result(n.id, preserve=True) is None and huey.storage.has_data_for_key(n.id)  # store_none=True
    assert client.get(n.id).has_value


def test_failure_is_errorinfo_not_hueys_repr(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    from huey.exceptions import TaskException

    client, _ = hb
    h = client.submit(tasks.fail, "boom 7")
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=30)
    assert ei.value.exc_type == "anytask.testing.tasks.TaskBoom" and ei.value.message == "boom 7"
    # What Huey itself stores: an Error with repr(exc) and the traceback, kept as JSON.
    with pytest.raises(TaskException) as he:
        huey_of(client).result(h.id, preserve=True)
    assert he.value.metadata["error"] == "TaskBoom('boom 7')" and "TaskBoom" in he.value.metadata["traceback"]


def test_retries_are_hueys_and_attempts_are_counted(hb: tuple[anytask.Client, WorkerProcess], tmp_path: Any) -> None:
    client, _ = hb
    path = str(tmp_path / "flaky.txt")
    h = client.submit(tasks.flaky.using(retries=2), path, 2)
    assert h.result(timeout=30) == 3
    assert client.get(h.id).attempts == 3


def test_timeout_is_hueys_task_timeout(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    client, _ = hb
    assert client.capabilities.get(Feature.TIMEOUT).support is Support.NATIVE
    t0 = time.monotonic()
    h = client.submit(tasks.sleep.using(timeout=0.5), 20.0)
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=30)
    assert ei.value.exc_type == "huey.exceptions.TaskTimeout"
    assert time.monotonic() - t0 < 10


def test_delay_is_scheduled_until_due(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    client, _ = hb
    h = client.submit(tasks.add.using(delay=2.5), 1, 2)
    assert client.status(h.id) is Status.SCHEDULED
    time.sleep(1.0)
    assert client.status(h.id) is Status.SCHEDULED  # the worker moved it to Huey's schedule
    assert h.result(timeout=30) == 3
    info = client.get(h.id)
    assert info.started_at is not None and info.enqueued_at is not None
    assert info.started_at - info.enqueued_at >= 2.4


def test_async_tasks_are_emulated_with_asyncio_run(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    client, _ = hb
    assert client.capabilities.get(Feature.ASYNC_TASKS).support is Support.EMULATED
    assert client.submit(tasks.async_add, 20, 22).result(timeout=30) == 42


# -- queues and workers -------------------------------------------------------------------------------


def test_queue_is_a_huey_instance_served_by_its_own_worker(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    client, _ = hb
    h = client.submit(tasks.add.using(queue="side"), 4, 4)
    time.sleep(1.5)
    assert client.status(h.id) is Status.QUEUED  # the "default" worker does not see the "side" instance
    w = _worker(client.url.raw, queue="side", concurrency=1).start()
    try:
        assert h.result(timeout=60) == 8
    finally:
        assert w.stop() == 0


def test_worker_refuses_several_queues(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    client, _ = hb
    w = WorkerProcess(client.url.raw, queues=("default", "side")).start()
    assert w.proc is not None
    assert w.proc.wait(60) == 2
    assert "one queue" in w.output()


def test_sigterm_interrupts_running_task_and_exits_0(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    client, _ = hb
    w = _worker(client.url.raw, queue="term", concurrency=1).start()
    try:
        _ready(w, client, "term")
        h = client.submit(tasks.sleep.using(queue="term"), 30.0, "late")
        deadline = time.monotonic() + 30
        while client.status(h.id) is not Status.RUNNING and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
    finally:
        code = w.stop()
    assert code == 0, w.output()
    assert time.monotonic() - t0 < 10
    info = client.get(h.id)
    assert info.status is Status.FAILED and info.error is not None
    assert info.error.type == "anytask.WorkerInterrupted"


def test_reliable_config_lets_the_running_task_finish_on_sigterm(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    client, _ = hb
    w = _worker(client.url.raw, queue="reliable", config="reliable", concurrency=1).start()
    try:
        _ready(w, client, "reliable")
        h = client.submit(tasks.sleep.using(queue="reliable"), 2.0, "done")
        deadline = time.monotonic() + 30
        while client.status(h.id) is not Status.RUNNING and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        code = w.stop()
    assert code == 0, w.output()
    assert client.get(h.id).status is Status.SUCCEEDED and client.result(h.id, timeout=1) == "done"


def test_task_unknown_to_the_worker_fails_instead_of_staying_queued(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    # Huey drops such a message with a log line only; the record would say QUEUED for ever.
    client, _ = hb
    w = WorkerProcess(client.url.raw, concurrency=1, queues=("term",)).start()  # without this module's tasks
    try:
        _ready(w, client, "term")
        h = client.submit(kw_echo.using(queue="term"), a=1)
        with pytest.raises(TaskFailed) as ei:
            h.result(timeout=30)
        assert ei.value.exc_type == "anytask.facade.errors.TaskNotRegistered" and "--tasks" in ei.value.message
    finally:
        assert w.stop() == 0, w.output()


def test_sighup_restarts_the_consumer_in_place(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    # huey's consumer re-execs sys.argv on SIGHUP; under "python -m anytask" that must stay a -m run.
    client, _ = hb
    w = _worker(client.url.raw, queue="term", concurrency=1).start()
    try:
        _ready(w, client, "term")
        assert w.proc is not None
        w.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "Consumer will restart" not in w.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        _ready(w, client, "term")
        assert w.output().count("The following commands are available") == 2
    finally:
        assert w.stop() == 0, w.output()


def test_consumer_options_pass_through() -> None:
    a = HueyAdapter(parse_url("huey+sqlite:///tmp/anytask-huey-opts.db"))

    c = a.consumer_config(WorkerOptions(concurrency=3))
    assert (c.workers, c.worker_type, c.graceful_signal) == (3, "process", "INT")
    c = a.consumer_config(WorkerOptions(config="reliable"))
    assert c.graceful_signal == "TERM"
    c = a.consumer_config(WorkerOptions(extra=("-k", "thread", "-m", "2")))
    assert (c.worker_type, c.max_delay) == ("thread", 2.0)
    with pytest.raises(ConfigurationError):
        a.consumer_config(WorkerOptions(extra=("-s", "7")))


# -- URLs and broker errors -----------------------------------------------------------------------------


def test_sqlite_urls() -> None:
    assert HueyAdapter(parse_url("huey+sqlite:///var/tmp/x.db")).filename == "/var/tmp/x.db"
    assert HueyAdapter(parse_url("huey+sqlite:////var/tmp/x.db")).filename == "/var/tmp/x.db"
    assert HueyAdapter(parse_url("huey+sqlite://data/x.db")).filename == os.path.abspath("data/x.db")
    with pytest.raises(ConfigurationError):
        HueyAdapter(parse_url("huey+sqlite://"))


def test_redis_down_raises_broker_unavailable_quickly() -> None:
    client = anytask.connect("huey+redis://:secret@127.0.0.1:1/0?timeout=1")
    t0 = time.monotonic()
    with pytest.raises(BrokerUnavailable) as ei:
        client.submit(tasks.add, 1, 2)
    assert "secret" not in str(ei.value) and "127.0.0.1:1" in str(ei.value)
    with pytest.raises(BrokerUnavailable):
        client.get(uuid.uuid4().hex)
    with pytest.raises(BrokerUnavailable):
        client.adapter.ping()
    assert time.monotonic() - t0 < 5


def test_sqlite_unusable_file_raises_broker_unavailable() -> None:
    client = anytask.connect("huey+sqlite:///proc/anytask-no-such-dir/x.db")
    with pytest.raises(BrokerUnavailable, match="SQLite"):
        client.submit(tasks.add, 1, 2)
    with pytest.raises(BrokerUnavailable, match="SQLite"):
        client.get("x")


# -- priority, cancel, rate limits, unique keys, result TTL, progress ------------------------------------


def _lines(path: str) -> list[str]:
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [ln.strip() for ln in fh if ln.strip()]


def _side(client: anytask.Client, stem: str) -> str:
    q = f"{stem}{uuid.uuid4().hex[:6]}"
    client.adapter.purge([q])
    return q


def test_priority_is_hueys_own_queue_order(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    client, _ = hb
    assert client.capabilities.get(Feature.PRIORITY).support is Support.NATIVE
    q = _side(client, "prio")
    try:
        low = client.submit(tasks.add.using(queue=q, priority=1), 1, 1)
        mid = client.submit(tasks.add.using(queue=q), 2, 2)  # no priority: Huey's 0
        high = client.submit(tasks.add.using(queue=q, priority=9), 3, 3)
        huey = huey_of(client, q)
        # Huey's own view of what a consumer takes next: highest first, the priority in the message.
        assert [t.id for t in huey.pending()] == [high.id, low.id, mid.id]
        assert [t.priority for t in huey.pending()] == [9, 1, None]
        if client.url.transport == "redis":  # PriorityRedisExpireHuey: a sorted set, not a list
            assert huey.storage.conn.type(huey.storage.queue_key) == b"zset"
    finally:
        client.adapter.purge([q])


def test_cancel_is_a_huey_revocation_consumed_by_the_consumer(hb: tuple[anytask.Client, WorkerProcess],
                                                              tmp_path: Any) -> None:
    from anytask import CancelOutcome

    client, _ = hb
    q = _side(client, "cancel")
    path = str(tmp_path / "cancel.txt")
    try:
        h = client.submit(tasks.record.using(queue=q), path, "never")
        res = h.cancel()
        assert res.outcome is CancelOutcome.CANCELLED_BEFORE_START and res.status is Status.CANCELLED
        huey = huey_of(client, q)
        assert huey.is_revoked(h.id)  # Huey's own tooling sees the cancel
        w = _worker(client.url.raw, queue=q, concurrency=1).start()
        try:
            assert client.submit(tasks.record.using(queue=q), path, "after").result(timeout=60) == "after"
        finally:
            assert w.stop() == 0, w.output()
        assert _lines(path) == ["after"]
        assert f"{h.id} was revoked, not executing" in w.output(), w.output()
        assert not huey.is_revoked(h.id)  # revoke_once: the consumer consumed the revocation
        assert client.status(h.id) is Status.CANCELLED
    finally:
        client.adapter.purge([q])


def test_cancel_wins_against_a_worker_that_already_checked_the_revocation(
        hb: tuple[anytask.Client, WorkerProcess], tmp_path: Any) -> None:
    # A consumer may have passed Huey's revocation check just before the revoke was written: the
    # record decides, and the pre_execute hook raises CancelExecution.
    client, _ = hb
    q = _side(client, "race")
    path = str(tmp_path / "race.txt")
    try:
        h = client.submit(tasks.record.using(queue=q), path, "never")
        assert h.cancel().cancelled
        huey_of(client, q).restore_by_id(h.id)  # as if the revocation came too late for the consumer
        w = _worker(client.url.raw, queue=q, concurrency=1).start()
        try:
            assert client.submit(tasks.record.using(queue=q), path, "after").result(timeout=60) == "after"
        finally:
            assert w.stop() == 0, w.output()
        assert _lines(path) == ["after"]
        assert "cancelled by anytask_start (pre-execute)" in w.output(), w.output()
        assert client.status(h.id) is Status.CANCELLED
    finally:
        client.adapter.purge([q])


def test_cancel_of_a_scheduled_task_and_of_a_pending_retry(hb: tuple[anytask.Client, WorkerProcess],
                                                            tmp_path: Any) -> None:
    client, _ = hb
    path = str(tmp_path / "sched.txt")
    h = client.submit(tasks.record.using(delay=2), path, "late")
    assert h.cancel().cancelled and client.status(h.id) is Status.CANCELLED
    flaky = str(tmp_path / "flaky.txt")
    r = client.submit(tasks.flaky.using(retries=3, retry_backoff=2.0), flaky, 5)
    deadline = time.monotonic() + 30
    while client.status(r.id) is not Status.RETRYING and time.monotonic() < deadline:
        time.sleep(0.02)
    assert r.cancel().cancelled and client.status(r.id) is Status.CANCELLED
    time.sleep(4.5)  # past the eta and the retry delay: neither runs
    assert _lines(path) == [] and _lines(flaky) == ["run"]
    assert client.status(h.id) is Status.CANCELLED and client.status(r.id) is Status.CANCELLED


def test_cancel_while_running_is_not_interruptible_and_leaves_no_revocation(
        hb: tuple[anytask.Client, WorkerProcess]) -> None:
    from anytask import CancelOutcome

    client, _ = hb
    h = client.submit(tasks.sleep, 1.5, "ran")
    deadline = time.monotonic() + 30
    while client.status(h.id) is not Status.RUNNING and time.monotonic() < deadline:
        time.sleep(0.02)
    res = h.cancel()
    assert res.outcome is CancelOutcome.NOT_INTERRUPTIBLE and "Huey cannot stop" in res.note
    assert not huey_of(client).is_revoked(h.id)
    assert h.result(timeout=30) == "ran"


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_rate_limit_defers_through_hueys_schedule_without_holding_a_slot(case: tuple[str, str], tmp_path: Any) -> None:
    # One worker slot: three starts of a 1/s task, then a plain task. The limited ones go back to Huey's
    # schedule (RetryTask(delay=...)), so the plain task runs at once instead of waiting behind them;
    # the deferrals use no retry and count no attempt.
    cid, url = case
    host, port = REDIS.rsplit(":", 1)
    if cid == "huey+redis" and not answers(host, int(port)):
        pytest.skip(f"no Redis at {REDIS}")
    client = anytask.connect(url)
    q = _side(client, "rate")
    path = str(tmp_path / "rate.txt")
    w = _worker(url, queue=q, concurrency=1).start()
    try:
        _ready(w, client, q)
        limited = tasks.record_time.using(queue=q, rate_limit="1/s")
        handles = [client.submit(limited, path, f"r{i}") for i in range(3)]
        time.sleep(0.3)
        plain = client.submit(tasks.record_time.using(queue=q), path, "plain")
        starts = [h.result(timeout=60) for h in handles]
        assert plain.result(timeout=60) < max(starts), (plain.get(), starts)
        assert max(starts) - min(starts) >= 1.9, starts  # 3 starts of a 1/s task span >= 2 s
        assert all(client.get(h.id).attempts == 1 for h in handles)
    finally:
        assert w.stop() == 0, w.output()
        client.adapter.purge([q])
        client.close()


def test_unique_claims_live_in_hueys_storage_and_expire(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    client, _ = hb
    a = client.adapter
    key = f"u-{uuid.uuid4().hex}"
    assert a.claim_unique(key, "first", 1.0) is None
    assert a.claim_unique(key, "second", 1.0) == "first"
    a.release_unique(key, "second")  # not the owner: no effect
    assert a.claim_unique(key, "third", 1.0) == "first"
    time.sleep(1.3)
    assert a.claim_unique(key, "fourth", 1.0) is None  # the first claim expired
    a.release_unique(key, "fourth")
    assert a.claim_unique(key, "fifth", 5.0) is None


def test_result_ttl_drops_the_record_and_hueys_result(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    client, _ = hb
    h = client.submit(tasks.add.using(result_ttl=1), 2, 2)
    assert h.result(timeout=30) == 4
    huey = huey_of(client)
    assert huey.result(h.id, preserve=True) == 4
    if client.url.transport == "redis":
        assert 0 < huey.storage.conn.pttl(huey.storage.result_key(h.id)) <= 1000
    time.sleep(1.3)
    assert client.status(h.id) is Status.UNKNOWN
    assert not huey.storage.has_data_for_key(h.id)  # SQLite: deleted by the read that found it expired


def test_progress_is_kept_in_the_state_record(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    client, _ = hb
    assert client.capabilities.get(Feature.PROGRESS).support is Support.EMULATED
    h = client.submit(tasks.with_progress, 2, 0.3)
    assert h.result(timeout=30) == 2
    adapter = client.adapter
    assert isinstance(adapter, HueyAdapter)
    assert (adapter.store.read(h.id) or {})["progress"] == {"done": 2, "total": 2, "stage": "step"}


def test_purge_drops_waiting_records_only(hb: tuple[anytask.Client, WorkerProcess]) -> None:
    client, _ = hb
    q = _side(client, "purge")
    waiting = client.submit(tasks.add.using(queue=q), 1, 1)
    cancelled = client.submit(tasks.add.using(queue=q), 1, 1)
    cancelled.cancel()
    done = client.submit(tasks.add, 1, 1)
    assert done.result(timeout=30) == 2
    client.adapter.purge([q])
    assert client.status(waiting.id) is Status.UNKNOWN  # its message is gone
    assert client.status(cancelled.id) is Status.CANCELLED and client.status(done.id) is Status.SUCCEEDED


# -- a worker process killed while running a task: FAILED anytask.WorkerLost --------------------------------

LIVENESS = 3.0  # worker_liveness of these cases (the default is 30 s)


def test_worker_liveness_url_parameter() -> None:
    assert HueyAdapter(parse_url("huey+sqlite:///tmp/anytask-huey-live.db")).liveness == 30.0
    assert HueyAdapter(parse_url("huey+sqlite:///tmp/anytask-huey-live.db?worker_liveness=2.5")).liveness == 2.5
    for bad, why in (("abc", "must be seconds"), ("0", "at least 1 second"), ("-4", "at least 1 second"),
                     ("nan", "at least 1 second"), ("inf", "at least 1 second")):
        with pytest.raises(ConfigurationError, match=why) as ei:
            HueyAdapter(parse_url(f"huey+redis://127.0.0.1:6379/0?worker_liveness={bad}"))
        assert f"worker_liveness={bad!r}" in str(ei.value)


def _until(cond: Any, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - t0


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_a_killed_worker_process_reads_worker_lost_and_a_live_one_keeps_running(case: tuple[str, str]) -> None:
    # Huey is at-most-once: a process worker killed (kill -9, OOM) while running a task loses it and the
    # consumer starts a new process. The record names its worker process, whose liveness beat stops: the
    # task reads FAILED anytask.WorkerLost within worker_liveness. Control: a task running longer than
    # worker_liveness in a live process keeps reading RUNNING (the beat works), then SUCCEEDED.
    import psutil

    cid, url = case
    host, port = REDIS.rsplit(":", 1)
    if cid == "huey+redis" and not answers(host, int(port)):
        pytest.skip(f"no Redis at {REDIS}")
    url += f"&worker_liveness={LIVENESS:g}"
    client = anytask.connect(url)
    adapter = client.adapter
    assert isinstance(adapter, HueyAdapter) and adapter.liveness == LIVENESS
    q = _side(client, "lost")
    w = _worker(url, queue=q, concurrency=2, config="tuned").start()
    watcher = anytask.connect(url)  # the control's reads, from another client (own beat-read count)
    samples: list[tuple[float, Status]] = []

    def watch(task_id: str) -> None:
        while True:
            st = watcher.status(task_id)
            samples.append((time.monotonic(), st))
            if st.finished:
                return
            time.sleep(0.1)

    try:
        _ready(w, client, q)
        finished = client.submit(tasks.add.using(queue=q), 1, 1)
        assert finished.result(timeout=30) == 2
        waiting = client.submit(tasks.add.using(queue="idle"), 1, 1)  # no worker consumes "idle"
        doomed = client.submit(tasks.sleep.using(queue=q), 120.0, "never")
        control = client.submit(tasks.sleep.using(queue=q), 5 * LIVENESS, "alive")
        watching = threading.Thread(target=watch, args=(control.id,), daemon=True)
        watching.start()
        _until(lambda: control.status() is Status.RUNNING and doomed.status() is Status.RUNNING, 30,
               "both tasks to run")
        rec, ctl = adapter.store.read(doomed.id) or {}, adapter.store.read(control.id) or {}
        assert rec.get("worker") and ctl.get("worker") and rec["worker"] != ctl["worker"], (rec, ctl)
        whost, wpid, _ = rec["worker"].rsplit(":", 2)
        pid = int(wpid)
        assert w.proc is not None
        consumer = psutil.Process(w.proc.pid)
        assert pid != consumer.pid and pid in {p.pid for p in consumer.children(recursive=True)}, (
            "the record must name the Huey worker process (a child of the consumer) that runs the task")

        # A beat check costs one extra read, and only for RUNNING records.
        calls: list[str] = []
        real_last_beat = adapter.store.last_beat

        def counting(worker: str) -> Any:
            calls.append(worker)
            return real_last_beat(worker)

        adapter.store.last_beat = counting  # type: ignore[method-assign]
        assert client.status(finished.id) is Status.SUCCEEDED and client.status(waiting.id) is Status.QUEUED
        assert calls == []  # no beat read for other statuses
        assert doomed.status() is Status.RUNNING and calls == [rec["worker"]]  # one for a RUNNING record

        os.kill(pid, signal.SIGKILL)
        t_kill = time.time()
        took = _until(lambda: doomed.status() is Status.FAILED, 15, "the killed worker's task to read FAILED")
        assert took >= LIVENESS - 1.0, f"FAILED after {took:.1f}s, before the {LIVENESS}s liveness timeout"
        info = client.get(doomed.id)
        assert info.error is not None and info.error.type == "anytask.WorkerLost", info
        assert f"process {pid} on host {whost}" in info.error.message, info.error.message
        assert "at most once" in info.error.message and "resubmit" in info.error.message
        assert "docs/reliability.md" in info.error.message
        with pytest.raises(TaskFailed) as ei:
            doomed.result(timeout=5)
        assert "anytask.WorkerLost" in str(ei.value) and ei.value.exc_type == "anytask.WorkerLost"
        # Persisted: the record itself says FAILED now, with the normal final TTL.
        stored = adapter.store.read(doomed.id) or {}
        assert stored.get("status") == "FAILED" and stored["error"]["type"] == "anytask.WorkerLost", stored
        assert t_kill - LIVENESS - 1 <= stored["finished_at"] <= time.time()
        assert stored["expires_at"] > time.time() + adapter.ttl - 120
        if client.url.transport == "redis":
            s = adapter.store.storage
            assert s.conn.pttl(s.result_key(doomed.id)) > (adapter.ttl - 120) * 1000
        n = len(calls)
        assert client.status(doomed.id) is Status.FAILED and len(calls) == n  # FAILED now: no beat read

        # Control: the live process's task stays RUNNING past the timeout, then succeeds.
        assert control.result(timeout=60) == "alive"
        watching.join(10)
        running = [t for t, st in samples if st is Status.RUNNING]
        after_start = [st for t, st in samples if running and t >= running[0]]
        assert [st for st in after_start if st is not Status.RUNNING] == [Status.SUCCEEDED], samples
        assert running and running[-1] - running[0] > 2 * LIVENESS, samples  # read RUNNING well past the timeout
        info = client.get(control.id)
        assert info.status is Status.SUCCEEDED and info.finished_at and info.started_at
        assert info.finished_at - info.started_at > LIVENESS + 1  # it did outlive the timeout
        # The consumer survived and keeps running tasks; the lost task is not run again (at-most-once).
        assert w.proc.poll() is None, w.output()
        assert client.submit(tasks.add.using(queue=q), 2, 2).result(timeout=60) == 4
        assert client.status(doomed.id) is Status.FAILED
    finally:
        assert w.stop() == 0, w.output()
        client.adapter.purge([q, "idle"])
        client.close()
        watcher.close()


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_worker_lost_is_judged_by_the_named_workers_beat_only(case: tuple[str, str]) -> None:
    # Without processes: records and beats written by hand. A fresh beat keeps RUNNING; a stale or
    # missing one reads FAILED (also through cancel); the FAILED write only replaces RUNNING of that worker.
    from anytask import CancelOutcome

    cid, url = case
    host, port = REDIS.rsplit(":", 1)
    if cid == "huey+redis" and not answers(host, int(port)):
        pytest.skip(f"no Redis at {REDIS}")
    client = anytask.connect(url + "&worker_liveness=2")
    adapter = client.adapter
    assert isinstance(adapter, HueyAdapter)
    store = adapter.store
    info = {"host": "h1", "pid": 41, "started_at": time.time(), "liveness": 2.0}
    live, dead, gone = "h1:41:1.000", "h1:42:1.000", f"h1:43:{uuid.uuid4().hex[:6]}"
    store.beat(live, info, 3600.0)
    store.beat(dead, {**info, "pid": 42}, 3600.0)
    ids = {name: uuid.uuid4().hex for name in ("live", "dead", "gone", "cancel", "other")}
    try:
        for name, worker in (("live", live), ("dead", dead), ("gone", gone), ("cancel", dead)):
            store.write(ids[name], {"status": "RUNNING", "task_name": "t", "queue": "idle", "worker": worker,
                                    "started_at": time.time() - 5}, None)
        time.sleep(2.3)  # both beats are now 2.3 s old; refresh the live one
        store.beat(live, info, 3600.0)
        assert client.status(ids["live"]) is Status.RUNNING
        res = client.get(ids["dead"])
        assert res.status is Status.FAILED and res.error is not None and res.error.type == "anytask.WorkerLost"
        assert "process 42 on host h1" in res.error.message and "over the 2 s worker_liveness" in res.error.message
        res = client.get(ids["gone"])
        assert res.status is Status.FAILED and res.error is not None and "no liveness beat left" in res.error.message
        c = adapter.cancel(ids["cancel"])  # (the client reads the status first; the adapter checks too)
        assert c.outcome is CancelOutcome.ALREADY_FINISHED and c.status is Status.FAILED
        # a worker beating with a longer worker_liveness than this client's is judged by its own
        slow = "h1:44:1.000"
        store.beat(slow, {**info, "pid": 44, "liveness": 30.0}, 3600.0)
        store.write(ids["other"], {"status": "RUNNING", "queue": "idle", "worker": slow}, None)
        time.sleep(2.3)
        assert client.status(ids["other"]) is Status.RUNNING
        # The FAILED write applies only to RUNNING of the worker the reader judged: a reader that read the
        # record when it named the dead worker, while a new attempt (live worker) has started since.
        stale_view = {**(store.read(ids["other"]) or {}), "worker": dead}
        store.write(ids["other"], {"worker": live}, None)
        now = adapter._unless_worker_lost(ids["other"], stale_view)
        assert now is not None and now["status"] == "RUNNING" and now["worker"] == live, now
        assert (store.read(ids["other"]) or {})["status"] == "RUNNING"
    finally:
        for i in ids.values():
            store.delete(i)
        client.close()
