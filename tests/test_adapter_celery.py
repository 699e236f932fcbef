"""Celery-specific behaviour of celery+redis and celery+amqp, against real brokers and real workers.

The conformance suite covers the facade semantics; these tests pin the Celery traps the adapter
neutralises (PENDING for unknown ids, disabled result backend, kombu publish retries, a client
SUBSCRIBE per publish, RETRY stored after the next attempt was published, exception classes
rebuilt on the client) and the native details (task names in ``celery inspect``, soft and hard
time limits, warm shutdown on SIGTERM, acks_late redelivery in the 'reliable' configuration).
The tasks below are module-level so the workers started here can import this module by name.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

import anytask
from anytask import Feature, Status
from anytask.facade.capabilities import Support
from anytask.facade.errors import BrokerUnavailable, ResultTimeout, TaskFailed
from anytask.facade.url import parse_url
from anytask.testing import tasks
from anytask.testing.backends import AMQP, REDIS, answers, selected_cases
from anytask.testing.workers import WorkerProcess

celery = pytest.importorskip("celery")
redis = pytest.importorskip("redis")

from celery.exceptions import SoftTimeLimitExceeded

from anytask.adapters.celery import CeleryAdapter, error_from_meta

RHOST, _, RPORT = REDIS.partition(":")
AHOST = AMQP.rpartition("@")[2].partition(":")[0]
HERE = os.path.dirname(os.path.abspath(__file__))
WORKER_ENV = {"PYTHONPATH": os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])}
THIS = __name__  # the name the worker imports (tests/ is on its PYTHONPATH)
CELERY = os.path.join(os.path.dirname(sys.executable), "celery")


@dataclass(frozen=True)
class Flavour:
    id: str
    url: str  # a URL of its own: DBs 12/13 and queue prefix t_celtest. are used by no conformance case
    result_db: int

    @property
    def broker(self) -> str:
        return parse_url(self.url).broker_url


FLAVOURS = [
    Flavour("celery+redis", f"celery+redis://{REDIS}/12?prefix=t_celtest.", 12),
    Flavour("celery+amqp", f"celery+amqp://{AMQP}//?result=redis://{REDIS}/13&prefix=t_celtest.", 13),
]


def _selected(fl: Flavour) -> bool:
    return any(c.id == fl.id for c in selected_cases())


def _reachable(fl: Flavour) -> str | None:
    if not answers(RHOST, int(RPORT or 6379)):
        return f"no Redis on {REDIS}"
    if fl.id == "celery+amqp" and not answers(AHOST, 5672):
        return f"no RabbitMQ on {AHOST}:5672"
    return None


@pytest.fixture(scope="module", params=FLAVOURS, ids=lambda f: f.id)
def flavour(request: pytest.FixtureRequest) -> Flavour:
    fl: Flavour = request.param
    if not _selected(fl):
        pytest.skip(f"{fl.id} not in ANYTASK_TEST_BACKENDS")
    reason = _reachable(fl)
    if reason:
        pytest.skip(reason)
    return fl


@pytest.fixture(scope="module")
def client(flavour: Flavour) -> Iterator[anytask.Client]:
    c = anytask.connect(flavour.url)
    c.adapter.purge(["default", "idle", "other"])
    yield c
    c.adapter.purge(["default", "idle", "other"])
    c.close()


@pytest.fixture(scope="module")
def worker(flavour: Flavour, client: anytask.Client) -> Iterator[WorkerProcess]:
    """One worker per flavour with this module's tasks, a custom node name given through ``extra``."""
    node = f"celtest-{uuid.uuid4().hex[:8]}@%h"
    w = WorkerProcess(flavour.url, tasks=("anytask.testing.tasks", THIS), concurrency=2, env=WORKER_ENV,
                      queues=("default", "other"), extra=[f"--hostname={node}"]).start()  # `-- EXTRA` reaches `celery worker`
    try:
        w.wait_ready(client)
        w.node = node.replace("%h", socket.gethostname())  # type: ignore[attr-defined]
        yield w
    finally:
        code = w.stop()
        assert code == 0, f"worker exited with {code}:\n{w.output()}"


def _redis(fl: Flavour) -> Any:
    return redis.Redis(host=RHOST, port=int(RPORT or 6379), db=fl.result_db)


# -- tasks run by the workers of this module ---------------------------------------------------


@anytask.task
def stubborn_sleep(seconds: float) -> str:
    """Swallows the soft time limit: only the hard limit (the pool kills the child) stops it."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            time.sleep(max(0.0, end - time.monotonic()))
        except SoftTimeLimitExceeded:
            pass
    return "finished"


@anytask.task
def mark_and_sleep(path: str, seconds: float) -> int:
    with open(path, "a") as fh:
        fh.write("run\n")
    time.sleep(seconds)
    with open(path) as fh:
        return len(fh.read().split())


@anytask.task
def whoami() -> dict[str, Any]:
    ctx = anytask.current_task()
    assert ctx is not None
    return {"id": ctx.id, "name": ctx.task_name, "attempt": ctx.attempt}


# -- native registration and tooling ------------------------------------------------------------


def test_tasks_are_registered_natively_in_celery_inspect(flavour: Flavour, worker: WorkerProcess) -> None:
    node = worker.node  # type: ignore[attr-defined]
    out = subprocess.run([CELERY, "-b", flavour.broker, "inspect", "registered", "-d", node, "--json",
                          "--timeout", "10"], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr + out.stdout
    reply = json.loads(out.stdout.strip().splitlines()[-1])
    names = " ".join(reply[node])
    for name in ("anytask.testing.tasks.add", "anytask.testing.tasks.async_add", f"{THIS}.stubborn_sleep"):
        assert name in names


def test_task_id_is_the_celery_task_id(flavour: Flavour, client: anytask.Client, worker: WorkerProcess) -> None:
    h = client.submit(whoami)
    assert h.result(timeout=30) == {"id": h.id, "name": f"{THIS}.whoami", "attempt": 1}
    adapter: CeleryAdapter = client.adapter  # type: ignore[assignment]
    res = adapter.app.AsyncResult(h.id)  # Celery's own view of the same id
    assert res.state == "SUCCESS" and res.name == f"{THIS}.whoami" and res.queue == "t_celtest.default"


# -- states --------------------------------------------------------------------------------------


def test_pending_is_told_apart_unknown_queued_scheduled(flavour: Flavour, client: anytask.Client) -> None:
    """Celery says PENDING for all three; the submit record makes them QUEUED / SCHEDULED / UNKNOWN."""
    adapter: CeleryAdapter = client.adapter  # type: ignore[assignment]
    idle = tasks.add.using(queue="idle")  # no worker consumes t_celtest.idle
    queued = client.submit(idle, 1, 2)
    scheduled = client.submit(idle.using(delay=60), 1, 2)
    unknown = uuid.uuid4().hex
    for tid in (queued.id, scheduled.id, unknown):
        assert adapter.app.AsyncResult(tid).state == "PENDING"  # the trap
    assert client.status(queued.id) is Status.QUEUED
    assert client.status(scheduled.id) is Status.SCHEDULED
    assert client.status(unknown) is Status.UNKNOWN
    info = client.get(queued.id)
    assert info.task_name == "anytask.testing.tasks.add" and info.enqueued_at and info.attempts == 0
    # purge drops the waiting messages and the records: the ids are unknown again
    client.adapter.purge(["idle"])
    assert client.status(queued.id) is Status.UNKNOWN
    assert client.status(scheduled.id) is Status.UNKNOWN


def test_delay_is_a_native_eta_scheduled_while_waiting(flavour: Flavour, client: anytask.Client,
                                                       worker: WorkerProcess) -> None:
    t0 = time.time()
    h = client.submit(tasks.add.using(delay=1.5), 2, 2)
    assert h.status() is Status.SCHEDULED
    adapter: CeleryAdapter = client.adapter  # type: ignore[assignment]
    assert adapter.app.AsyncResult(h.id).state == "PENDING"
    assert h.result(timeout=30) == 4
    info = h.get()
    assert info.started_at is not None and info.started_at >= t0 + 1.4
    assert info.status is Status.SUCCEEDED


def test_queues_are_native_celery_queues(flavour: Flavour, client: anytask.Client, worker: WorkerProcess) -> None:
    """queue="other" -> Celery queue t_celtest.other, consumed because the worker runs -Q ...,t_celtest.other."""
    h = client.submit(tasks.add.using(queue="other"), 5, 6)
    assert h.result(timeout=30) == 11
    adapter: CeleryAdapter = client.adapter  # type: ignore[assignment]
    assert adapter.app.AsyncResult(h.id).queue == "t_celtest.other"
    node = worker.node  # type: ignore[attr-defined]
    replies = adapter.app.control.inspect(destination=[node], timeout=5).active_queues() or {}
    assert sorted(q["name"] for q in replies[node]) == ["t_celtest.default", "t_celtest.other"]


def test_no_result_subscription_per_submit(flavour: Flavour, client: anytask.Client) -> None:
    """Trap: send_task SUBSCRIBEs the client to every task's result channel until get() is called."""
    r = _redis(flavour)
    adapter: CeleryAdapter = client.adapter  # type: ignore[assignment]
    ids = [client.submit(tasks.add.using(queue="idle"), 1, i).id for i in range(5)]
    keys = [adapter._meta_key(i) for i in ids]
    assert all(n == 0 for _, n in r.pubsub_numsub(*keys))
    client.adapter.purge(["idle"])


def test_fast_retries_end_succeeded(flavour: Flavour, client: anytask.Client, worker: WorkerProcess,
                                    tmp_path: Any) -> None:
    """Trap: Task.retry publishes the next attempt before the tracer stores RETRY; a fast attempt's
    SUCCESS was then overwritten by the late RETRY and the task stayed RETRYING for ever."""
    paths = [str(tmp_path / f"flaky-{i}") for i in range(12)]
    with ThreadPoolExecutor(4) as pool:
        handles = list(pool.map(lambda p: client.submit(tasks.flaky.using(retries=2), p, 2), paths))
    assert [h.result(timeout=30) for h in handles] == [3] * len(handles)
    time.sleep(0.5)
    for h in handles:
        info = h.get()
        assert info.status is Status.SUCCEEDED and info.attempts == 3


def test_retrying_shows_the_last_error(flavour: Flavour, client: anytask.Client, worker: WorkerProcess,
                                       tmp_path: Any) -> None:
    h = client.submit(tasks.flaky.using(retries=1, retry_backoff=3.0), str(tmp_path / "f"), 1)
    deadline = time.monotonic() + 10
    while client.status(h.id) is not Status.RETRYING:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    info = h.get()
    assert info.error is not None and info.error.type == "anytask.testing.tasks.TaskBoom"
    assert info.attempts == 1
    assert h.result(timeout=30) == 2
    done = h.get()
    assert done.attempts == 2 and done.error is None  # the success carries no error of the failed attempt


# -- failures --------------------------------------------------------------------------------------


def test_failure_meta_is_read_without_importing_the_class(flavour: Flavour, client: anytask.Client) -> None:
    """A FAILURE naming a module the client cannot import still maps to FAILED with strings."""
    adapter: CeleryAdapter = client.adapter  # type: ignore[assignment]
    tid = uuid.uuid4().hex
    meta = {"status": "FAILURE", "result": {"exc_type": "Gone", "exc_module": "no_such_module.errors",
                                            "exc_message": ["it left"]},
            "traceback": "Traceback ...\nno_such_module.errors.Gone: it left\n", "children": [],
            "date_done": "2026-01-01T00:00:00+00:00", "task_id": tid, "retries": 0}
    _redis(flavour).set(adapter._meta_key(tid), json.dumps(meta), ex=60)
    with pytest.raises(TaskFailed) as ei:
        client.result(tid, timeout=5)
    assert ei.value.exc_type == "no_such_module.errors.Gone" and ei.value.message == "it left"
    assert "it left" in ei.value.traceback
    assert "no_such_module" not in sys.modules


def test_error_from_meta_matches_str_of_the_exception() -> None:
    assert error_from_meta({"exc_type": "ValueError", "exc_module": "builtins", "exc_message": ["bad"]}, None) \
        .to_dict() == {"type": "ValueError", "message": "bad", "traceback": ""}
    assert error_from_meta({"exc_type": "KeyError", "exc_module": "builtins", "exc_message": ["k", 2]}, "tb") \
        .message == str(KeyError("k", 2))
    assert error_from_meta({"exc_type": "E", "exc_module": "m", "exc_message": []}, "").message == ""


def test_soft_time_limit_fails_the_task_with_its_timeout(flavour: Flavour, client: anytask.Client,
                                                         worker: WorkerProcess) -> None:
    h = client.submit(tasks.sleep.using(timeout=1), 10.0)
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=30)
    assert ei.value.exc_type == "billiard.exceptions.SoftTimeLimitExceeded"
    assert "timeout of 1" in ei.value.message


def test_hard_time_limit_kills_a_task_that_ignores_the_soft_one(flavour: Flavour, client: anytask.Client,
                                                               worker: WorkerProcess) -> None:
    t0 = time.monotonic()
    h = client.submit(stubborn_sleep.using(timeout=1), 20.0)
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=30)
    assert time.monotonic() - t0 < 10
    assert ei.value.exc_type == "billiard.exceptions.TimeLimitExceeded"
    assert ei.value.message == "task killed after its hard time limit of 2.0s"  # timeout 1 + 1 s grace
    assert h.status() is Status.FAILED


def test_timeouts_are_retried_like_any_failure(flavour: Flavour, client: anytask.Client,
                                               worker: WorkerProcess) -> None:
    h = client.submit(tasks.sleep.using(timeout=1, retries=1), 10.0)
    with pytest.raises(TaskFailed):
        h.result(timeout=30)
    assert h.get().attempts == 2


def test_async_functions_are_emulated_with_asyncio_run(flavour: Flavour, client: anytask.Client,
                                                       worker: WorkerProcess) -> None:
    fs = client.capabilities.get(Feature.ASYNC_TASKS)
    assert fs.support is Support.EMULATED and "asyncio.run" in fs.how
    assert client.submit(tasks.async_add, 20, 22).result(timeout=30) == 42


def test_wait_uses_the_result_channel_and_keeps_the_result(flavour: Flavour, client: anytask.Client,
                                                           worker: WorkerProcess) -> None:
    h = client.submit(tasks.sleep, 0.3, "v")
    with pytest.raises(ResultTimeout):
        client.adapter.wait(h.id, 0.05)
    t0 = time.monotonic()
    assert client.adapter.wait(h.id, 10).value == "v"
    assert time.monotonic() - t0 < 1.0
    assert client.result(h.id, timeout=1) == "v"  # not consumed, not forgotten
    assert client.adapter.wait(h.id, 0).value == "v"


def test_async_await_uses_the_result_channel(flavour: Flavour, client: anytask.Client,
                                             worker: WorkerProcess) -> None:
    async def main() -> tuple[float, Any]:
        h = await client.asubmit(tasks.sleep, 1.5, "late")
        with pytest.raises(ResultTimeout, match="status (QUEUED|RUNNING)"):
            await h.aresult(timeout=0.2)
        t0 = time.monotonic()
        value = await h.aresult(timeout=30)  # spans two 1 s slices
        return time.monotonic() - t0, value

    took, value = asyncio.run(main())
    assert value == "late" and took < 2.0


# -- broker down ---------------------------------------------------------------------------------


class SilentServer:
    """Accepts TCP connections and never answers (a hung broker / a firewall that holds packets),
    or answers every connection with ``greeting`` (another service on the port)."""

    def __init__(self, greeting: bytes = b"") -> None:
        self.greeting = greeting
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.greeting:
                try:
                    conn.sendall(self.greeting)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture(scope="module")
def silent() -> Iterator[SilentServer]:
    s = SilentServer()
    yield s
    s.close()


@pytest.fixture(scope="module")
def http() -> Iterator[SilentServer]:
    s = SilentServer(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    yield s
    s.close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("case", ["redis-closed", "redis-silent", "amqp-closed", "amqp-silent", "amqp-badauth",
                                  "result-silent", "result-http"])
def test_broker_down_raises_broker_unavailable_in_time(case: str, silent: SilentServer, http: SilentServer) -> None:
    if not answers(RHOST, int(RPORT or 6379)):
        pytest.skip(f"no Redis on {REDIS}")
    if case in ("amqp-badauth", "result-silent", "result-http") and not answers(AHOST, 5672):
        pytest.skip(f"no RabbitMQ on {AHOST}:5672")
    port = silent.port if case.endswith("silent") else _closed_port()
    prefix = f"t_down{uuid.uuid4().hex[:6]}."
    result = f"redis://{REDIS}/12"
    url = {
        "redis-closed": f"celery+redis://127.0.0.1:{port}/0?timeout=1&prefix={prefix}&result={result}",
        "redis-silent": f"celery+redis://127.0.0.1:{port}/0?timeout=1&prefix={prefix}&result={result}",
        "amqp-closed": f"celery+amqp://guest:s3cret@127.0.0.1:{port}//?timeout=1&prefix={prefix}&result={result}",
        "amqp-silent": f"celery+amqp://guest:s3cret@127.0.0.1:{port}//?timeout=1&prefix={prefix}&result={result}",
        "amqp-badauth": f"celery+amqp://guest:s3cret@{AHOST}:5672//?timeout=1&prefix={prefix}&result={result}",
        "result-silent": f"celery+amqp://guest:s3cret@{AHOST}:5672//?timeout=1&prefix={prefix}"
                         f"&result=redis://127.0.0.1:{silent.port}/0",
        "result-http": f"celery+amqp://guest:s3cret@{AHOST}:5672//?timeout=1&prefix={prefix}"
                       f"&result=redis://127.0.0.1:{http.port}/0",
    }[case]
    with anytask.connect(url) as c:
        for what in ("submit", "ping", "get"):
            t0 = time.monotonic()
            try:
                if what == "submit":
                    c.submit(tasks.add, 1, 2)
                elif what == "ping":
                    c.adapter.ping()
                else:
                    c.get(uuid.uuid4().hex)
            except BrokerUnavailable as exc:
                assert "s3cret" not in str(exc)
            else:
                assert what == "get" and not case.startswith("result-"), f"{what} did not fail on {case}"
            assert time.monotonic() - t0 < 2.5, f"{what} took {time.monotonic() - t0:.1f}s on {case}"
    # nothing half-written: the submission record went with the failed publish
    keys = redis.Redis(host=RHOST, port=int(RPORT or 6379), db=12).keys(f"anytask:celery:{prefix}*")
    assert keys == []


# -- progress, cancel, priority, rate limit, unique keys, result TTL -----------------------------


def _wait_status(client: anytask.Client, task_id: str, wanted: Status, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while client.status(task_id) is not wanted:
        assert time.monotonic() < deadline, f"{task_id} never {wanted.value}"
        time.sleep(0.02)


def test_progress_leaves_celerys_started_state(flavour: Flavour, client: anytask.Client,
                                               worker: WorkerProcess) -> None:
    """Progress lives in anytask's record: Task.update_state(meta=...) would replace STARTED."""
    adapter: CeleryAdapter = client.adapter  # type: ignore[assignment]
    h = client.submit(tasks.with_progress, 3, 0.4)
    deadline = time.monotonic() + 15
    while not (h.progress() or {}).get("done"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert adapter.app.AsyncResult(h.id).state == "STARTED" and h.status() is Status.RUNNING
    assert h.result(timeout=30) == 3 and h.progress() == {"done": 3, "total": 3, "stage": "step"}


def test_cancel_while_running_kills_the_prefork_child(flavour: Flavour, client: anytask.Client,
                                                       worker: WorkerProcess, tmp_path: Any) -> None:
    from anytask.facade.records import CancelOutcome

    adapter: CeleryAdapter = client.adapter  # type: ignore[assignment]
    path = str(tmp_path / "runs")
    h = client.submit(mark_and_sleep, path, 3.0)
    _wait_status(client, h.id, Status.RUNNING)
    res = h.cancel()
    assert res.outcome is CancelOutcome.TERMINATED_WHILE_RUNNING, res
    assert adapter.app.AsyncResult(h.id).state == "REVOKED"  # stored by Celery's worker (terminate)
    info = h.get()
    assert info.status is Status.CANCELLED and info.note == "revoked: terminated"
    time.sleep(3.5)
    with open(path) as fh:
        assert fh.read().split() == ["run"]
    assert client.submit(tasks.add, 1, 1).result(timeout=30) == 2  # the pool replaced the killed child


def test_cancel_before_start_reaches_a_worker_holding_the_eta_message(flavour: Flavour, client: anytask.Client,
                                                                       worker: WorkerProcess, tmp_path: Any) -> None:
    """A delayed message sits in the worker's memory: the revoke broadcast makes Celery drop it."""
    from anytask.facade.records import CancelOutcome

    adapter: CeleryAdapter = client.adapter  # type: ignore[assignment]
    path = str(tmp_path / "runs")
    h = client.submit(tasks.record.using(delay=2), path, "never")
    time.sleep(0.5)  # the worker has reserved it by now
    res = h.cancel()
    assert res.outcome is CancelOutcome.CANCELLED_BEFORE_START and h.status() is Status.CANCELLED
    node = worker.node  # type: ignore[attr-defined]
    revoked = adapter.app.control.inspect(destination=[node], timeout=5).revoked() or {}
    assert h.id in revoked.get(node, [])  # Celery's own revoked set
    time.sleep(2.5)
    assert not os.path.exists(path)
    assert adapter.app.AsyncResult(h.id).state == "REVOKED" and h.status() is Status.CANCELLED


def test_priority_uses_the_native_mechanism(flavour: Flavour, client: anytask.Client) -> None:
    adapter: CeleryAdapter = client.adapter  # type: ignore[assignment]
    queue = f"prio{uuid.uuid4().hex[:6]}"
    name = adapter._queue(queue)
    adapter.purge([queue])
    try:
        client.submit(tasks.add.using(queue=queue, priority=8), 1, 1)
        client.submit(tasks.add.using(queue=queue), 1, 1)  # no priority = 0, the lowest
        if flavour.id == "celery+redis":
            # kombu's Redis transport: one list per step, key = queue + sep + step, step 0 popped first
            r = _redis(flavour)
            sep = "\x06\x16"
            assert r.llen(f"{name}{sep}1") == 1 and r.llen(f"{name}{sep}9") == 1 and r.llen(name) == 0
        else:
            # the queue exists with x-max-priority=9: redeclaring it with exactly that argument is accepted
            with adapter.app.connection_for_write() as conn:
                conn.default_channel.queue_declare(name, durable=True, auto_delete=False,
                                                   arguments={"x-max-priority": 9})
    finally:
        adapter.purge([queue])
        if flavour.id == "celery+amqp":
            with adapter.app.connection_for_write() as conn:
                conn.default_channel.queue_delete(name)


def test_a_queue_declared_without_max_priority_is_a_configuration_error(flavour: Flavour,
                                                                         client: anytask.Client) -> None:
    if flavour.id != "celery+amqp":
        pytest.skip("x-max-priority is a RabbitMQ queue argument")
    from anytask.facade.errors import ConfigurationError

    adapter: CeleryAdapter = client.adapter  # type: ignore[assignment]
    queue = f"legacy{uuid.uuid4().hex[:6]}"
    name = adapter._queue(queue)
    with adapter.app.connection_for_write() as conn:  # as an older anytask / a plain Celery app declared it
        conn.default_channel.queue_declare(name, durable=True, auto_delete=False)
    try:
        with pytest.raises(ConfigurationError, match="x-max-priority") as ei:
            client.submit(tasks.add.using(queue=queue), 1, 2)
        assert f"delete_queue {name}" in str(ei.value)
    finally:
        with adapter.app.connection_for_write() as conn:
            conn.default_channel.queue_delete(name)


def test_rate_limit_is_cluster_wide_and_not_a_retry(flavour: Flavour, client: anytask.Client,
                                                    worker: WorkerProcess, tmp_path: Any) -> None:
    """Two workers share the limit (Celery's own rate_limit is per worker); waiting is SCHEDULED."""
    second = WorkerProcess(flavour.url, tasks=("anytask.testing.tasks", THIS), concurrency=2, env=WORKER_ENV,
                           queues=("default",)).start()
    try:
        second.wait_ready(client)
        limited = tasks.record_time.using(rate_limit="3/s")
        handles = [client.submit(limited, str(tmp_path / "rate"), f"r{i}") for i in range(9)]
        seen: set[Status] = set()
        while not all(client.status(h.id).finished for h in handles):
            seen.update(client.status(h.id) for h in handles)
            time.sleep(0.05)
        starts = sorted(h.result(timeout=30) for h in handles)
    finally:
        assert second.stop() == 0, second.output()
    assert Status.SCHEDULED in seen
    # sliding window: any 3 + 1 consecutive starts span at least about a second
    assert all(starts[i + 3] - starts[i] >= 0.9 for i in range(len(starts) - 3)), starts
    assert all(client.get(h.id).attempts == 1 for h in handles)  # a re-published start is not a retry


def test_unique_key_lives_as_long_as_the_record(flavour: Flavour, client: anytask.Client) -> None:
    adapter: CeleryAdapter = client.adapter  # type: ignore[assignment]
    key = f"u-{uuid.uuid4().hex}"
    t = tasks.add.using(queue="idle", unique_key=key, result_ttl=1)
    first = client.submit(t, 1, 2)
    time.sleep(1.5)  # longer than result_ttl: the claim is held while the task waits
    assert client.submit(t, 1, 2).id == first.id
    assert _redis(flavour).ttl(adapter._unique_key(key)) > 3600
    client.adapter.purge(["idle"])
    assert client.submit(t, 1, 2).id != first.id  # purge drops records and claims
    client.adapter.purge(["idle"])


def test_result_ttl_expires_celerys_meta_and_the_record(flavour: Flavour, client: anytask.Client,
                                                        worker: WorkerProcess) -> None:
    adapter: CeleryAdapter = client.adapter  # type: ignore[assignment]
    r = _redis(flavour)
    short = client.submit(tasks.add.using(result_ttl=30), 1, 1)
    failed = client.submit(tasks.fail.using(result_ttl=30), "boom")
    plain = client.submit(tasks.add, 1, 1)
    for h in (short, failed, plain):
        client.adapter.wait(h.id, 30)
    for h in (short, failed):
        assert 0 < r.ttl(adapter._meta_key(h.id)) <= 30 and 0 < r.ttl(adapter._store().key(h.id)) <= 30
    assert r.ttl(adapter._meta_key(plain.id)) > 6 * 24 * 3600  # Celery's result_expires (7 days)


# -- worker lifecycle ------------------------------------------------------------------------------


@pytest.mark.parametrize("config", ["defaults", "tuned"])
def test_sigterm_is_a_warm_shutdown_exit_0(flavour: Flavour, client: anytask.Client, config: str) -> None:
    url = flavour.url.replace("t_celtest.", "t_celsig.")
    with anytask.connect(url) as c:
        c.adapter.purge(["default"])
        w = WorkerProcess(url, concurrency=1, config=config).start()
        try:
            w.wait_ready(c)
            h = c.submit(tasks.sleep, 2.0, "finished")
            deadline = time.monotonic() + 15
            while c.status(h.id) is not Status.RUNNING:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert w.proc is not None
            w.proc.send_signal(signal.SIGTERM)
            assert w.proc.wait(20) == 0, w.output()
            assert "Warm shutdown" in w.output()
            assert c.result(h.id, timeout=1) == "finished"  # the running task was finished, not lost
        finally:
            w.stop()
            c.adapter.purge(["default"])


def test_reliable_config_redelivers_a_task_whose_worker_died(tmp_path: Any) -> None:
    """'reliable' = acks_late + reject_on_worker_lost: on RabbitMQ a killed worker's task runs again."""
    fl = FLAVOURS[1]
    if not _selected(fl) or _reachable(fl):
        pytest.skip(f"{fl.id} not selected or not reachable")
    url = fl.url.replace("t_celtest.", "t_celrel.")
    path = str(tmp_path / "runs")
    with anytask.connect(url) as c:
        c.adapter.purge(["default"])
        mods = ("anytask.testing.tasks", THIS)
        first = WorkerProcess(url, mods, concurrency=1, config="reliable", env=WORKER_ENV).start()
        second = WorkerProcess(url, mods, concurrency=1, config="reliable", env=WORKER_ENV)
        try:
            first.wait_ready(c)
            h = c.submit(mark_and_sleep, path, 2.0)
            deadline = time.monotonic() + 15
            while c.status(h.id) is not Status.RUNNING:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert first.proc is not None
            os.killpg(first.proc.pid, signal.SIGKILL)  # main process and pool children
            first.proc.wait(5)
            second.start()
            assert c.result(h.id, timeout=40) == 2  # ran again: at-least-once
        finally:
            first.stop()
            second.stop()
            c.adapter.purge(["default"])


def test_worker_configurations_name_their_knobs() -> None:
    from anytask.facade.adapter import WorkerOptions

    a = CeleryAdapter(parse_url(f"celery+redis://{REDIS}/12?prefix=p."))
    d = a.worker_argv(WorkerOptions(concurrency=3, queues=("default", "x")))
    assert d[:4] == ["worker", "--pool=prefork", "--concurrency=3", "-Q"] and d[4] == "p.default,p.x"
    assert "--without-mingle" in a.worker_argv(WorkerOptions(config="tuned"))
    assert "--prefetch-multiplier=1" in a.worker_argv(WorkerOptions(config="reliable"))
    assert a.worker_argv(WorkerOptions(extra=("--loglevel=DEBUG",)))[-1] == "--loglevel=DEBUG"
    conf = a.app.conf
    assert conf.result_backend.startswith("redis://") and conf.task_serializer == "json"
    assert conf.accept_content == ["json"] and conf.result_extended and conf.task_track_started
    assert conf.task_default_queue == "p.default"
    # priority: ten Redis lists per queue (kombu pops step 0 first, so facade p -> 9 - p); RabbitMQ x-max-priority
    assert conf.broker_transport_options["priority_steps"] == list(range(10)) and conf.task_queue_max_priority is None
    assert (a.native_priority(9), a.native_priority(0), a.native_priority(None)) == (0, 9, 9)
    b = CeleryAdapter(parse_url(f"celery+amqp://{AMQP}//?result=redis://{REDIS}/13&prefix=p."))
    assert b.app.conf.task_queue_max_priority == 9 and b.native_priority(7) == 7 and b.native_priority(None) == 0
