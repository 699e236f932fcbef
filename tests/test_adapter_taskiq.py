"""TaskiQ adapter: the library traps it neutralises, with real brokers and real ``taskiq worker`` processes.

Runs for the taskiq cases selected by ANYTASK_TEST_BACKENDS (all of them when it is unset). Names are
isolated from the conformance cases with their own ``prefix``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import anytask
from anytask import CancelOutcome, Status
from anytask.facade.errors import BrokerUnavailable, TaskCancelled, TaskFailed, UnsupportedFeature
from anytask.facade.url import parse_url
from anytask.testing import tasks
from anytask.testing.backends import AMQP, REDIS, BackendCase, unreachable, workdir
from anytask.testing.workers import WorkerProcess

pytest.importorskip("taskiq")
pytest.importorskip("taskiq_redis")

from anytask.adapters import taskiq as tq  # noqa: E402

CASES = {
    "taskiq+redis": f"taskiq+redis://{REDIS}/7?prefix=t_probe.",
    "taskiq+amqp": f"taskiq+amqp://{AMQP}/?result=redis://{REDIS}/8&prefix=t_taskiq_probe.",
}
_selected = [c.strip() for c in os.environ.get("ANYTASK_TEST_BACKENDS", "").split(",") if c.strip()]
IDS = [cid for cid in CASES if not _selected or cid in _selected]
if not IDS:
    pytest.skip("no taskiq case selected in ANYTASK_TEST_BACKENDS", allow_module_level=True)

PROBE_MODULE = "anytask_taskiq_probe"
PROBE_SOURCE = '''
import asyncio
from typing import Any

from anytask import task


@task
def typed(x: int) -> Any:
    return [x, type(x).__name__]


@task
async def async_sleep(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


@task(queue="probe_other")
def on_other(x: int) -> int:
    return x * 2


@task
async def async_progress(steps: int) -> int:
    from anytask import progress

    for i in range(steps):
        progress(i + 1, steps, stage="async")
        await asyncio.sleep(0.3)
    return steps
'''


def _probe_dir() -> str:
    path = os.path.join(workdir(), "taskiq-probe")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, PROBE_MODULE + ".py"), "w") as fh:
        fh.write(textwrap.dedent(PROBE_SOURCE))
    if path not in sys.path:
        sys.path.insert(0, path)
    return path


def _delete_native_queue(url: str, name: str) -> None:
    """Make the queue brand new: no Redis stream / consumer group, no RabbitMQ queue or binding."""
    conf = tq._Conf(parse_url(url))
    if conf.transport == "redis":
        import redis

        redis.Redis.from_url(conf.url.broker_url).delete(conf.queue(name))
    else:
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(f"amqp://{AMQP}/%2F"))
        try:
            conn.channel().queue_delete(conf.queue(name))
        finally:
            conn.close()


@dataclass
class Probe:
    id: str
    url: str
    client: anytask.Client
    env: dict[str, str]
    worker: WorkerProcess
    early: Any  # a TaskHandle submitted to a queue that did not exist, before any worker ran

    def worker_for(self, queues: tuple[str, ...]) -> WorkerProcess:
        return WorkerProcess(self.url, tasks=("anytask.testing.tasks", PROBE_MODULE), concurrency=2,
                             queues=queues, env=self.env)


@pytest.fixture(scope="module", params=IDS)
def probe(request: pytest.FixtureRequest) -> Iterator[Probe]:
    cid = request.param
    url = CASES[cid]
    reason = unreachable(BackendCase(cid, url))
    if reason:
        pytest.skip(reason)
    path = _probe_dir()
    probe_tasks = __import__(PROBE_MODULE)
    env = {"PYTHONPATH": os.pathsep.join([path, os.environ.get("PYTHONPATH", "")])}
    client = anytask.connect(url)
    client.adapter.purge(["default", "probe_other"])
    _delete_native_queue(url, "probe_other")
    with anytask.connect(url) as fresh:  # a new client's first act: send to a queue that does not exist
        early = fresh.submit(probe_tasks.on_other, 21)
    worker = WorkerProcess(url, tasks=("anytask.testing.tasks", PROBE_MODULE), concurrency=2,
                           queues=("default",), env=env).start()
    try:
        worker.wait_ready(client)
        yield Probe(cid, url, client, env, worker, early)
    finally:
        code = worker.stop()
        client.adapter.purge(["default", "probe_other", "probe_sigterm"])
        client.close()
    assert code == 0, f"worker exited with {code}:\n{worker.output()}"


def _wait_status(client: anytask.Client, task_id: str, wanted: Status, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.status(task_id) is wanted:
            return
        time.sleep(0.02)
    raise AssertionError(f"{wanted} not reached; status {client.status(task_id)}")


# -- traps ---------------------------------------------------------------------------------------------


def test_message_sent_before_the_queue_existed_is_delivered(probe: Probe) -> None:
    """Redis: the consumer group starts at id 0, not taskiq's default "$" (which skips earlier messages).
    AMQP: the client declares and binds the queue before publishing (an unbound routing key is dropped).
    Queues: a worker on "default" never runs it."""
    time.sleep(1.5)
    assert probe.early.status() is Status.QUEUED
    with probe.worker_for(("probe_other", "default")) as other:  # two queues: streams / queues merged
        assert probe.early.result(timeout=30) == 42
        assert probe.client.status(probe.early.id) is Status.SUCCEEDED
        # a retry is re-kicked by the worker to the task's own queue (AMQP: routed by the queue label)
        path = os.path.join(workdir(), f"taskiq-other-{uuid.uuid4().hex}.txt")
        h = probe.client.submit(tasks.flaky.using(queue="probe_other", retries=1), path, 1)
        assert h.result(timeout=30) == 2
    assert other.proc is not None and other.proc.returncode == 0, other.output()


def test_arguments_are_not_coerced_by_taskiq(probe: Probe) -> None:
    """taskiq parses arguments with pydantic from annotations; the registered wrapper has none."""
    probe_tasks = __import__(PROBE_MODULE)
    assert probe.client.submit(probe_tasks.typed, "7").result(timeout=30) == ["7", "str"]


def test_async_task_timeout_fails_with_time_limit(probe: Probe) -> None:
    probe_tasks = __import__(PROBE_MODULE)
    t0 = time.monotonic()
    h = probe.client.submit(probe_tasks.async_sleep.using(timeout=1), 10)
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=30)
    assert time.monotonic() - t0 < 6
    assert ei.value.exc_type == "TimeoutError"
    assert "time limit of 1.0s" in ei.value.message
    assert h.get().attempts == 1


def test_retries_count_retries_with_exponential_backoff(probe: Probe) -> None:
    """taskiq's max_retries counts runs: retries=2 is sent as max_retries=3; backoff 0.5 then 1.0 s."""
    path = os.path.join(workdir(), f"taskiq-flaky-{uuid.uuid4().hex}.txt")
    t0 = time.monotonic()
    h = probe.client.submit(tasks.flaky.using(retries=2, retry_backoff=0.5), path, 2)
    _wait_status(probe.client, h.id, Status.RETRYING)
    assert h.result(timeout=30) == 3
    assert time.monotonic() - t0 >= 1.5
    info = h.get()
    assert info.attempts == 3 and info.status is Status.SUCCEEDED
    with open(path) as fh:
        assert len(fh.read().split()) == 3


def test_native_result_is_json_and_reading_does_not_consume(probe: Probe) -> None:
    """RedisAsyncResultBackend defaults to pickle and (optionally) GETDEL: we set JSON and keep_results."""
    h = probe.client.submit(tasks.add, 2, 3)
    assert h.result(timeout=30) == 5
    conf = tq._Conf(parse_url(probe.url))
    broker = conf.broker()

    async def read_twice() -> list[Any]:
        backend = broker.result_backend
        try:
            # anytask's record is written in post_execute, taskiq's result just after it (receiver order):
            # under load the facade can see the end a moment before taskiq's key exists
            deadline = time.monotonic() + 10
            while not await backend.is_result_ready(h.id) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert await backend.is_result_ready(h.id)
            return [(await backend.get_result(h.id)).return_value for _ in range(2)]
        finally:
            await backend.shutdown()

    assert asyncio.run(read_twice()) == [5, 5]
    import redis

    raw = redis.Redis.from_url(conf.result_url).get(f"{conf.result_prefix}:{h.id}")
    assert raw is not None and json.loads(raw)["return_value"] == 5
    assert probe.client.result(h.id, timeout=1) == 5


def test_unknown_task_name_is_failed_not_queued_forever(probe: Probe) -> None:
    """taskiq's receiver acks and drops a message for an unknown task before any middleware runs."""
    from anytask.facade.task import Task

    ghost = Task(func=tasks.add.func, name="anytask.testing.tasks.not_in_the_worker")
    h = probe.client.submit(ghost, 1, 2)
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=30)
    assert ei.value.exc_type == "anytask.facade.errors.TaskNotRegistered"
    assert "not_in_the_worker" in ei.value.message


def test_tasks_are_registered_natively(probe: Probe, monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker the `taskiq worker` CLI loads has every task under its anytask name."""
    monkeypatch.setenv(tq.ENV_URL, probe.url)
    monkeypatch.setenv(tq.ENV_MODULES, f"anytask.testing.tasks,{PROBE_MODULE}")
    monkeypatch.setenv(tq.ENV_TASKS, "anytask.testing.tasks.add,anytask.testing.tasks.async_add")
    broker = tq.worker_broker()
    names = set(broker.get_all_tasks())
    assert {"anytask.testing.tasks.add", "anytask.testing.tasks.async_add"} <= names
    add = broker.find_task("anytask.testing.tasks.add")
    assert add is not None and add.labels["queue_name"].endswith("default")
    assert "max_retries" not in add.labels  # no hidden default retries
    assert tq._labels(tq._Conf(parse_url(probe.url)),
                      tasks.add.using(retries=2))["max_retries"] == 3


def test_sigterm_lets_the_running_task_finish_and_exits_0(probe: Probe) -> None:
    probe.client.adapter.purge(["probe_sigterm"])
    with probe.worker_for(("probe_sigterm",)) as w:
        h = probe.client.submit(tasks.sleep.using(queue="probe_sigterm"), 2.0, "finished")
        _wait_status(probe.client, h.id, Status.RUNNING, timeout=60)
        code = w.stop()
        assert code == 0, w.output()
        assert h.status() is Status.SUCCEEDED  # the worker waited for the running task
    assert h.result(timeout=1) == "finished"


# -- priority, cancel, rate limit, unique keys, result TTL, progress -------------------------------------


def test_priority_uses_the_native_mechanism(probe: Probe) -> None:
    """amqp: the AMQP priority property on a classic x-max-priority queue; redis: one stream per priority."""
    conf = tq._Conf(parse_url(probe.url))
    probe.client.adapter.purge(["probe_prio"])
    h = probe.client.submit(tasks.add.using(queue="probe_prio", priority=8), 1, 2)
    try:
        if conf.transport == "redis":
            import redis

            r = redis.Redis.from_url(conf.url.broker_url)
            assert r.xlen(conf.queue("probe_prio") + ":p8") == 1
            assert r.xlen(conf.queue("probe_prio")) == 0
            # a worker reads every p9 stream first, the plain streams last
            assert conf.streams(["a", "b"])[:2] == [conf.queue("a") + ":p9", conf.queue("b") + ":p9"]
            assert conf.streams(["a", "b"])[-2:] == [conf.queue("a"), conf.queue("b")]
        else:
            import pika

            conn = pika.BlockingConnection(pika.URLParameters(f"amqp://{AMQP}/%2F"))
            try:
                ch = conn.channel()
                # redeclaring with these exact arguments succeeds only if the queue has them
                ch.queue_declare(conf.queue("probe_prio"), durable=True, arguments={
                    "x-queue-type": "classic", "x-max-priority": 9, "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": conf.queue("taskiq.dead_letter")})
                method, props, _body = ch.basic_get(conf.queue("probe_prio"), auto_ack=True)
                assert method is not None and props.priority == 8 and props.headers["task_id"] == h.id
            finally:
                conn.close()
    finally:
        probe.client.adapter.purge(["probe_prio"])


def test_quorum_queues_refuse_priority() -> None:
    """RabbitMQ 3.x quorum queues have no priorities: with queue_type=quorum a priority is refused
    before anything is written or sent."""
    if "taskiq+amqp" not in IDS:
        pytest.skip("taskiq+amqp not selected")
    with anytask.connect(f"taskiq+amqp://{AMQP}/?result=redis://{REDIS}/8&prefix=t_quorum.&queue_type=quorum") as c:
        with pytest.raises(UnsupportedFeature, match="quorum"):
            c.submit(tasks.add.using(priority=5), 1, 2)
        assert tq._Conf(c.url).amqp_queue("x").max_priority is None


def test_cancel_while_a_retry_is_pending(probe: Probe) -> None:
    """RETRYING is cancellable: the worker does not re-kick it (and would skip the message anyway)."""
    path = os.path.join(workdir(), f"taskiq-cancel-retry-{uuid.uuid4().hex}.txt")
    h = probe.client.submit(tasks.flaky.using(retries=1, retry_backoff=2.0), path, 1)
    _wait_status(probe.client, h.id, Status.RETRYING)
    res = h.cancel()
    assert res.outcome is CancelOutcome.CANCELLED_BEFORE_START and res.status is Status.CANCELLED
    time.sleep(3.0)
    with open(path) as fh:
        assert len(fh.read().split()) == 1  # the first run only
    assert h.status() is Status.CANCELLED
    with pytest.raises(TaskCancelled):
        h.result(timeout=1)


def test_a_long_rate_wait_re_enqueues_instead_of_holding_the_slot() -> None:
    """rate_hold=0.3: a task over its limit for longer is re-enqueued at the tail, so the worker's only
    slot keeps running other tasks; the waiting task stays QUEUED and can still be cancelled."""
    import redis

    prefix = f"t_rate{uuid.uuid4().hex[:6]}."
    base = f"{REDIS}/7" if "taskiq+redis" in IDS else None
    if base is None:
        pytest.skip("taskiq+redis not selected")
    url = f"taskiq+redis://{base}?prefix={prefix}&rate_hold=0.3"
    path = os.path.join(workdir(), f"taskiq-rate-{uuid.uuid4().hex}.txt")
    limited = tasks.record.using(rate_limit="1/m")
    try:
        with anytask.connect(url) as client, WorkerProcess(url, concurrency=1) as w:
            w.wait_ready(client)
            first = client.submit(limited, path, "first")
            assert first.result(timeout=30) == "first"
            second = client.submit(limited, path, "second")
            time.sleep(1.0)
            assert client.submit(tasks.add, 1, 2).result(timeout=10) == 3  # the slot is not held
            assert second.status() is Status.QUEUED
            assert second.cancel().outcome is CancelOutcome.CANCELLED_BEFORE_START
            time.sleep(1.0)
        with open(path) as fh:
            assert fh.read().split() == ["first"]
    finally:
        r = redis.Redis.from_url(f"redis://{REDIS}/7")
        for pattern in (f"{prefix}*", f"anytask:taskiq:{prefix}*"):
            for key in r.scan_iter(match=pattern, count=1000):
                r.delete(key)


def test_result_ttl_expires_native_result_and_unique_claim(probe: Probe) -> None:
    """The final write expires the state record, taskiq's result key and the unique claim together."""
    import redis

    conf = tq._Conf(parse_url(probe.url))
    r = redis.Redis.from_url(conf.result_url)
    key = f"k-{uuid.uuid4().hex}"
    h = probe.client.submit(tasks.add.using(result_ttl=1, unique_key=key), 1, 1)
    assert h.result(timeout=30) == 2
    claim = conf.state_prefix + "unique:" + key
    native = f"{conf.result_prefix}:{h.id}"
    deadline = time.monotonic() + 10  # taskiq saves its result (and post_save expires it) just after our record
    while not 0 < r.pttl(native) <= 1000 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert 0 < r.pttl(claim) <= 1000 and 0 < r.pttl(native) <= 1000
    time.sleep(1.5)
    assert h.status() is Status.UNKNOWN
    assert not r.exists(claim) and not r.exists(f"{conf.result_prefix}:{h.id}")
    again = probe.client.submit(tasks.add.using(result_ttl=1, unique_key=key), 2, 2)
    assert again.id != h.id and again.result(timeout=30) == 4


def test_a_pending_unique_claim_outlives_result_ttl_and_purge_releases_it(probe: Probe) -> None:
    """While the task waits the claim lives as long as its record; purging its queue drops both."""
    probe.client.adapter.purge(["probe_idle"])
    key = f"k-{uuid.uuid4().hex}"
    t = tasks.add.using(queue="probe_idle", result_ttl=1, unique_key=key)
    h = probe.client.submit(t, 1, 1)
    time.sleep(1.5)
    assert probe.client.submit(t, 1, 1).id == h.id and h.status() is Status.QUEUED
    probe.client.adapter.purge(["probe_idle"])
    assert h.status() is Status.UNKNOWN
    other = probe.client.submit(t, 1, 1)
    assert other.id != h.id
    probe.client.adapter.purge(["probe_idle"])


def test_progress_of_an_async_task(probe: Probe) -> None:
    probe_tasks = __import__(PROBE_MODULE)
    h = probe.client.submit(probe_tasks.async_progress, 4)
    deadline, seen = time.monotonic() + 15, None
    while time.monotonic() < deadline and seen is None:
        p = h.progress()
        if p and h.status() is Status.RUNNING:
            seen = p
        time.sleep(0.05)
    assert seen is not None and seen["total"] == 4 and seen["stage"] == "async"
    assert h.result(timeout=30) == 4
    assert h.progress() == {"done": 4, "total": 4, "stage": "async"}


# -- broker down -----------------------------------------------------------------------------------


def _silent_port() -> tuple[socket.socket, int]:
    """A port that accepts TCP connections and never answers (a hung broker)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s, s.getsockname()[1]


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_broker_down_raises_within_the_timeout(kind: str) -> None:
    if "taskiq+amqp" not in IDS:
        pytest.skip("taskiq+amqp not selected")
    silent, port = _silent_port()
    if kind == "refused":
        silent.close()
    try:
        url = f"taskiq+amqp://guest:secret@127.0.0.1:{port}/?result=redis://{REDIS}/8&timeout=1"
        with anytask.connect(url) as client:
            t0 = time.monotonic()
            with pytest.raises(BrokerUnavailable) as ei:
                client.submit(tasks.add, 1, 2)
            assert time.monotonic() - t0 < 2.5
            assert "secret" not in str(ei.value) and "***" in str(ei.value)

            async def twin() -> None:
                with pytest.raises(BrokerUnavailable):
                    await client.asubmit(tasks.add, 1, 2)

            t0 = time.monotonic()
            asyncio.run(twin())
            assert time.monotonic() - t0 < 2.5
            # no aio-pika reconnect loop is left running on the adapter's private loop
            leftovers = [t for t in asyncio.all_tasks(client.adapter._io.loop)  # type: ignore[attr-defined]
                         if "RobustConnection" in getattr(t.get_coro(), "__qualname__", "")]
            assert not leftovers
            # nothing half-written: no QUEUED record was left behind for the failed submits
            store = client.adapter.recorder.store  # type: ignore[attr-defined]
            assert not list(store.client.scan_iter(match=store.prefix + "*"))
    finally:
        if kind == "silent":
            silent.close()


def test_redis_down_raises_quickly() -> None:
    if "taskiq+redis" not in IDS:
        pytest.skip("taskiq+redis not selected")
    with anytask.connect("taskiq+redis://127.0.0.1:1/0?timeout=1") as client:
        t0 = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            client.submit(tasks.add, 1, 2)
        with pytest.raises(BrokerUnavailable):
            client.status(uuid.uuid4().hex)
        assert time.monotonic() - t0 < 2.5


class _Proxy:
    """A TCP proxy to a real broker whose open connections can be cut (a broker restart, seen by a client)."""

    def __init__(self, port: int) -> None:
        import threading

        self.target = ("127.0.0.1", port)
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self.srv.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conns = []


def test_amqp_connection_lost_fails_fast_then_recovers() -> None:
    """aio-pika's robust connection would retry in the background (5 s) while publishes fail with
    ChannelInvalidStateError: the adapter raises BrokerUnavailable and starts a fresh connection next time."""
    if "taskiq+amqp" not in IDS:
        pytest.skip("taskiq+amqp not selected")
    proxy = _Proxy(int(AMQP.rsplit(":", 1)[1]))
    user = AMQP.rsplit("@", 1)[0]
    url = f"taskiq+amqp://{user}@127.0.0.1:{proxy.port}/?result=redis://{REDIS}/8&prefix=t_taskiq_probe.&timeout=1"
    with anytask.connect(url) as client:
        client.adapter.purge(["default"])
        client.submit(tasks.add, 1, 2)
        proxy.cut()
        time.sleep(0.3)
        t0 = time.monotonic()
        outcomes = []
        for _ in range(2):
            try:
                client.submit(tasks.add, 1, 2)
                outcomes.append("sent")
            except BrokerUnavailable:
                outcomes.append("unavailable")
        assert time.monotonic() - t0 < 3.0
        assert outcomes[-1] == "sent", outcomes
        client.adapter.purge(["default"])


def test_redis_message_of_a_killed_worker_is_redelivered() -> None:
    """At-least-once on Redis streams: an un-acked message is XAUTOCLAIMed by another consumer once it
    has been idle ``idle_timeout`` s (taskiq checks after each batch of new messages)."""
    if "taskiq+redis" not in IDS:
        pytest.skip("taskiq+redis not selected")
    import signal

    url = f"taskiq+redis://{REDIS}/7?prefix=t_probe_kill.&idle_timeout=1"
    with anytask.connect(url) as client:
        client.adapter.purge(["default"])
        first = WorkerProcess(url, concurrency=1).start()
        try:
            first.wait_ready(client)
            h = client.submit(tasks.sleep, 1.5, "survived")
            _wait_status(client, h.id, Status.RUNNING)
            assert first.proc is not None
            os.killpg(first.proc.pid, signal.SIGKILL)
        finally:
            first.stop()
        time.sleep(1.2)
        with WorkerProcess(url, concurrency=2) as second:
            second.wait_ready(client)  # new messages make the worker look for idle un-acked ones
            assert h.result(timeout=30) == "survived"
            assert h.get().attempts == 1  # a redelivery is not a retry
        client.adapter.purge(["default"])


def test_acked_stream_entries_are_deleted() -> None:
    """Trap (soak): taskiq-redis acknowledges with XACK alone, so the stream kept every message ever sent.
    anytask's broker deletes each entry as it acks it: after the tasks end, the stream is empty and
    nothing is pending, while a message no worker has read yet stays."""
    import redis

    url = CASES["taskiq+redis"]
    reason = unreachable(BackendCase("taskiq+redis", url))
    if reason:
        pytest.skip(reason)
    conf = tq._Conf(parse_url(url))
    r = redis.Redis.from_url(conf.url.broker_url)
    queue = f"xdel-{uuid.uuid4().hex[:8]}"
    client = anytask.connect(url)
    try:
        handles = [client.submit(tasks.add.using(queue=queue), i, 1) for i in range(20)]
        streams = conf.streams([queue])
        assert sum(r.xlen(s) for s in streams) == 20  # written, not read yet: kept
        worker = WorkerProcess(url, tasks=("anytask.testing.tasks",), concurrency=2, queues=(queue,)).start()
        try:
            assert [h.result(timeout=60) for h in handles] == [i + 1 for i in range(20)]
            deadline = time.monotonic() + 10
            while sum(r.xlen(s) for s in streams) and time.monotonic() < deadline:
                time.sleep(0.05)  # the ack follows the result write
            assert sum(r.xlen(s) for s in streams) == 0, {s: r.xlen(s) for s in streams}
            for s in streams:
                for group in r.xinfo_groups(s) if r.exists(s) else []:
                    assert group["pending"] == 0, (s, group)
        finally:
            assert worker.stop() == 0, worker.output()
    finally:
        client.adapter.purge([queue])
        r.delete(*conf.streams([queue]))
        client.close()
