"""RQ-specific behaviour of the rq+redis adapter, against real Redis and real ``anytask worker`` processes.

The conformance suite covers the facade semantics; these tests pin the RQ traps the adapter
neutralises (pickle, 180 s default timeout, 500 s result TTL, scheduler needed for delays and retry
backoff) and the native details (task name in RQ's own tooling, job class, worker configurations).
The tasks below are module-level so the workers started here can import this module by name.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

import anytask
from anytask.facade.state import DEFAULT_TTL
from anytask import Status
from anytask.facade.errors import BrokerUnavailable, TaskFailed
from anytask.testing import tasks
from anytask.testing.backends import REDIS, answers
from anytask.testing.workers import WorkerProcess

rq = pytest.importorskip("rq")
redis = pytest.importorskip("redis")

from rq.job import Job
from rq.serializers import JSONSerializer

from anytask.adapters.rq import CANCEL_FLAG, RATE_KEY, RQAdapter, parse_exc_string, worker_queue_order

HOST, _, PORT = REDIS.partition(":")
DB = 9  # not used by any conformance case
URL = f"rq+redis://{REDIS}/{DB}"
PREFIXED = f"rq+redis://{REDIS}/{DB}?prefix=t_rq."
HERE = os.path.dirname(os.path.abspath(__file__))
WORKER_ENV = {"PYTHONPATH": os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])}
THIS = __name__  # the name the worker imports (tests/ is on its PYTHONPATH)

pytestmark = pytest.mark.skipif(not answers(HOST, int(PORT or 6379)), reason=f"no Redis on {REDIS}")


# -- tasks run by the workers of this module ---------------------------------------------------


@anytask.task
def whoami() -> dict[str, Any]:
    ctx = anytask.current_task()
    assert ctx is not None
    return {"id": ctx.id, "name": ctx.task_name, "attempt": ctx.attempt, "pid": os.getpid()}


@anytask.task
async def awhoami() -> dict[str, Any]:
    await asyncio.sleep(0)
    ctx = anytask.current_task()
    assert ctx is not None
    return {"id": ctx.id, "name": ctx.task_name, "attempt": ctx.attempt}


@anytask.task
def rq_option_names(timeout: int, description: str, meta: dict[str, Any], job_id: str) -> list[Any]:
    return [timeout, description, meta, job_id]  # names RQ's enqueue() would take for itself


@anytask.task
def rated(token: str) -> str:
    return token


@anytask.task
def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # the RQ work horse dies: no Python exception to record


# -- fixtures ------------------------------------------------------------------------------------


def _client(url: str = URL) -> anytask.Client:
    return anytask.connect(url)


@pytest.fixture(scope="module")
def client() -> Iterator[anytask.Client]:
    c = _client()
    c.adapter.purge(["default", "ctx"])
    yield c
    c.adapter.purge(["default", "ctx"])
    c.close()


@pytest.fixture(scope="module")
def worker(client: anytask.Client) -> Iterator[WorkerProcess]:
    """Default configuration, a pool of 2 (``rq worker-pool``), both queues, this module's tasks too."""
    w = WorkerProcess(URL, tasks=["anytask.testing.tasks", THIS], concurrency=2, queues=["default", "ctx"],
                      env=WORKER_ENV).start()
    try:
        w.wait_ready(client)
        yield w
    finally:
        assert w.stop() == 0, w.output()


def rq_job(client: anytask.Client, task_id: str) -> Job:
    adapter = client.adapter
    assert isinstance(adapter, RQAdapter)
    return Job.fetch(task_id, connection=adapter.redis, serializer=JSONSerializer)


# -- native jobs ---------------------------------------------------------------------------------


def test_job_is_native_json_and_named_after_the_task(client: anytask.Client, worker: WorkerProcess) -> None:
    h = client.submit(tasks.add, 2, 3)
    assert h.result(timeout=20) == 5
    job = rq_job(client, h.id)
    assert job.id == h.id and job.func_name == "anytask.testing.tasks.add"
    assert job.description == "anytask.testing.tasks.add(2, 3)"
    assert job.origin == "default"
    adapter = client.adapter
    assert isinstance(adapter, RQAdapter)
    raw = adapter.redis.hget(Job.key_for(h.id), "data")
    assert json.loads(zlib.decompress(raw)) == ["anytask.testing.tasks.add", None, [2, 3], {}]  # JSON, not pickle
    assert job.latest_result().return_value == 5
    # RQ's own worker log names the task; RQ's own CLI sees the queue and this pool's workers
    assert f"default: anytask.testing.tasks.add(2, 3) ({h.id})" in worker.output()
    out = subprocess.run([sys.executable, "-m", "rq.cli", "info", "--url", f"redis://{REDIS}/{DB}", "default"],
                         check=False, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("default "), out.stdout
    assert re.search(r"^[2-9]\d* workers, 1 queues$", out.stdout, re.MULTILINE), out.stdout


def test_rq_defaults_are_neutralised(client: anytask.Client, worker: WorkerProcess) -> None:
    h = client.submit(tasks.add, 1, 1)
    assert h.result(timeout=20) == 2
    job = rq_job(client, h.id)
    assert job.timeout == -1  # not RQ's 180 s default
    adapter = client.adapter
    assert isinstance(adapter, RQAdapter)
    week = 7 * 24 * 3600
    for key in (Job.key_for(h.id), f"rq:results:{h.id}"):
        assert week - 60 < adapter.redis.ttl(key) <= week  # not RQ's 500 s result TTL
    failed = client.submit(tasks.fail, "x")
    with pytest.raises(TaskFailed):
        failed.result(timeout=20)
    assert week - 60 < adapter.redis.ttl(Job.key_for(failed.id)) <= week  # not RQ's 1-year failure TTL
    # fractional time limits are rounded up: RQ counts whole seconds (SIGALRM)
    sub = client.submit(tasks.sleep.using(timeout=1.2), 0.01)
    sub.result(timeout=20)
    assert rq_job(client, sub.id).timeout == 2


def test_delay_is_scheduled_by_rqs_scheduler(client: anytask.Client, worker: WorkerProcess) -> None:
    t0 = time.monotonic()
    h = client.submit(tasks.add.using(delay=2), 3, 4)
    assert h.status() is Status.SCHEDULED
    job = rq_job(client, h.id)
    assert job.get_status() == "scheduled"
    assert h.id in rq.Queue("default", connection=job.connection).scheduled_job_registry.get_job_ids()
    assert h.result(timeout=20) == 7
    assert time.monotonic() - t0 >= 1.5
    assert h.get().attempts == 1


def test_retries_use_rq_retry_and_report_attempts(client: anytask.Client, worker: WorkerProcess,
                                                  tmp_path: Any) -> None:
    path = str(tmp_path / "flaky.txt")
    h = client.submit(tasks.flaky.using(retries=2, retry_backoff=1.0), path, 5)
    seen = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not h.get().finished:
        seen.add(h.status())
        time.sleep(0.05)
    info = h.get()
    assert info.status is Status.FAILED and Status.RETRYING in seen
    assert info.attempts == 3
    assert info.error is not None and info.error.message == "run 3 fails on purpose"
    job = rq_job(client, h.id)
    assert job.retries_left == 0 and job.retry_intervals == [1.0, 2.0]  # exponential backoff, natively


def test_task_context_and_native_async_in_the_worker(client: anytask.Client, worker: WorkerProcess) -> None:
    ctx_queue = whoami.using(queue="ctx")
    h = client.submit(ctx_queue)
    r = h.result(timeout=20)
    assert r["id"] == h.id and r["name"] == f"{THIS}.whoami" and r["attempt"] == 1
    assert r["pid"] != worker.pid  # run in RQ's forked work horse
    a = client.submit(awhoami.using(queue="ctx"))
    assert a.result(timeout=20) == {"id": a.id, "name": f"{THIS}.awhoami", "attempt": 1}
    kw = client.submit(rq_option_names.using(queue="ctx"), timeout=7, description="d", meta={"m": 1}, job_id="j")
    assert kw.result(timeout=20) == [7, "d", {"m": 1}, "j"]


def test_killed_work_horse_fails_the_job_with_rqs_reason(client: anytask.Client, worker: WorkerProcess) -> None:
    h = client.submit(die.using(queue="ctx"))
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=30)
    assert ei.value.exc_type == "anytask.adapters.rq.WorkerFailure"
    assert "Work-horse terminated unexpectedly" in ei.value.message


def test_task_unknown_to_the_worker_fails_with_task_not_registered(client: anytask.Client,
                                                                  worker: WorkerProcess) -> None:
    ghost = anytask.Task(func=tasks.add.func, name="anytask.testing.nowhere.ghost")  # no worker can import it
    h = client.submit(ghost, 1, 2)
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=20)
    assert ei.value.exc_type == "anytask.facade.errors.TaskNotRegistered"
    assert "anytask.testing.nowhere.ghost" in ei.value.message


# -- progress, priority, cancel, rate limit, unique keys, result TTL --------------------------------


def test_progress_is_rqs_job_meta(client: anytask.Client, worker: WorkerProcess) -> None:
    h = client.submit(tasks.with_progress, 2, 0.05)
    assert h.result(timeout=20) == 2
    assert rq_job(client, h.id).meta["anytask_progress"] == {"done": 2, "total": 2, "stage": "step"}
    assert h.progress() == {"done": 2, "total": 2, "stage": "step"}


def test_priority_goes_to_rq_priority_queues(client: anytask.Client) -> None:
    adapter = client.adapter
    assert isinstance(adapter, RQAdapter)
    q = f"prio{uuid.uuid4().hex[:6]}"  # no worker listens: the jobs wait where the producer put them
    try:
        hi = client.submit(tasks.add.using(queue=q, priority=8), 1, 1)
        lo = client.submit(tasks.add.using(queue=q, priority=0), 1, 1)
        plain = client.submit(tasks.add.using(queue=q), 1, 1)
        assert rq_job(client, hi.id).origin == f"{q}:p8"
        assert rq_job(client, lo.id).origin == q and rq_job(client, plain.id).origin == q
        assert rq.Queue(f"{q}:p8", connection=adapter.redis).job_ids == [hi.id]
        assert rq.Queue(q, connection=adapter.redis).job_ids == [lo.id, plain.id]
        adapter.purge([q])  # the priority queues are purged with their queue
        assert rq.Queue(f"{q}:p8", connection=adapter.redis).count == 0
        assert hi.status() is Status.UNKNOWN
    finally:
        adapter.purge([q])


def test_cancel_removes_a_scheduled_job_natively(client: anytask.Client) -> None:
    adapter = client.adapter
    assert isinstance(adapter, RQAdapter)
    h = client.submit(tasks.add.using(delay=60, result_ttl=120), 1, 2)
    res = h.cancel()
    assert res.outcome is anytask.CancelOutcome.CANCELLED_BEFORE_START and res.status is Status.CANCELLED
    job = rq_job(client, h.id)
    assert job.get_status() == "canceled"
    assert h.id not in rq.Queue("default", connection=adapter.redis).scheduled_job_registry.get_job_ids()
    assert h.id in rq.Queue("default", connection=adapter.redis).canceled_job_registry.get_job_ids()
    assert 100 < adapter.redis.ttl(Job.key_for(h.id)) <= 120  # RQ would keep a cancelled job forever
    info = h.get()
    assert info.attempts == 0 and info.started_at is None and "before it started" in info.note


def test_cancel_of_a_job_a_worker_already_holds_never_runs_it(client: anytask.Client, worker: WorkerProcess,
                                                              tmp_path: Any) -> None:
    """The window RQ's job.cancel() leaves open: the id is popped by a worker (here: by hand) but the job
    has not started. The flag read by the wrapper right before the task body keeps it from running."""
    adapter = client.adapter
    assert isinstance(adapter, RQAdapter)
    path = str(tmp_path / "held.txt")
    q = f"held{uuid.uuid4().hex[:6]}"  # no worker listens to it yet
    try:
        h = client.submit(tasks.record.using(queue=q), path, "held")
        queue = rq.Queue(q, connection=adapter.redis)
        assert adapter.redis.lpop(queue.key) == h.id.encode()  # what a worker's BLPOP does
        adapter.CANCEL_WAIT = 0.5  # type: ignore[misc]  # it never starts: cancel gives up waiting
        res = h.cancel()
        assert res.outcome is anytask.CancelOutcome.CANCELLED_BEFORE_START
        assert adapter.redis.exists(CANCEL_FLAG + h.id)
        # the worker goes on with the job it holds: status started, then the wrapper refuses the body
        adapter.redis.rpush(queue.key, h.id)
        with WorkerProcess(URL, concurrency=1, queues=[q]):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and rq_job(client, h.id).get_status() != "stopped":
                time.sleep(0.05)
            assert rq_job(client, h.id).get_status() == "stopped"  # RQ's own state: stopped, not failed
            after = client.submit(tasks.record.using(queue=q), path, "after")
            assert after.result(timeout=20) == "after"
        assert (tmp_path / "held.txt").read_text().split() == ["after"]
        info = h.get()
        assert info.status is Status.CANCELLED and info.started_at is None and info.attempts == 0
        assert rq_job(client, h.id).meta["anytask_cancel"] == "skipped"
    finally:
        adapter.__dict__.pop("CANCEL_WAIT", None)
        adapter.purge([q])


def test_cancel_interrupts_a_simpleworker_job(tmp_path: Any) -> None:
    """RQ's SimpleWorker ignores stop-job (no horse to kill); the tuned config's worker class stops the body."""
    c = _client(PREFIXED)
    c.adapter.purge(["default"])
    path = str(tmp_path / "simple.txt")
    w = WorkerProcess(PREFIXED, tasks=["anytask.testing.tasks", THIS], concurrency=1, config="tuned",
                      env=WORKER_ENV).start()
    try:
        w.wait_ready(c)
        h = c.submit(tasks.slow_record, path, 5.0)
        deadline = time.monotonic() + 15
        while h.status() is not Status.RUNNING and time.monotonic() < deadline:
            time.sleep(0.02)
        t0 = time.monotonic()
        res = h.cancel()
        assert res.outcome is anytask.CancelOutcome.TERMINATED_WHILE_RUNNING, res
        assert time.monotonic() - t0 < 2.0
        assert rq_job(c, h.id).get_status() == "stopped"
        assert h.get().note == "terminated while running by an RQ stop-job command"
        assert c.submit(whoami.using()).result(timeout=20)["pid"] == w.pid  # same worker process goes on
        time.sleep(0.5)
        assert (tmp_path / "simple.txt").read_text().split() == ["start"]
    finally:
        assert w.stop() == 0, w.output()
        c.adapter.purge(["default"])
        c.close()


def test_rate_limit_defers_into_rqs_schedule(client: anytask.Client, worker: WorkerProcess) -> None:
    adapter = client.adapter
    assert isinstance(adapter, RQAdapter)
    adapter.redis.delete(RATE_KEY + rated.name)  # the window of an earlier run of this test
    limited = rated.using(rate_limit="1/m")
    first = client.submit(limited, "first")
    assert first.result(timeout=20) == "first"
    second = client.submit(limited, "second")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and rq_job(client, second.id).get_status() != "scheduled":
        time.sleep(0.05)
    job = rq_job(client, second.id)
    assert job.get_status() == "scheduled"  # back in RQ's ScheduledJobRegistry, no worker slot held
    assert 50 < job.meta["anytask_rate_deferred"] - time.time() <= 61
    assert second.status() is Status.QUEUED  # waiting for its turn, not a delay= the user asked
    assert client.submit(tasks.add, 1, 1).result(timeout=20) == 2  # other tasks are not held up
    assert second.cancel().outcome is anytask.CancelOutcome.CANCELLED_BEFORE_START


def test_unique_key_is_claimed_with_set_nx_ex(client: anytask.Client, worker: WorkerProcess) -> None:
    adapter = client.adapter
    assert isinstance(adapter, RQAdapter)
    key = f"u-{uuid.uuid4().hex}"
    h = client.submit(tasks.add.using(unique_key=key, result_ttl=30), 1, 2)
    assert adapter.redis.get(f"anytask:rq:unique:{key}") == h.id.encode()
    # the claim is held for the record's lifetime while the task waits or runs (the facade's default TTL)
    assert DEFAULT_TTL - 60 < adapter.redis.ttl(f"anytask:rq:unique:{key}") <= DEFAULT_TTL
    assert client.submit(tasks.add.using(unique_key=key), 5, 5).id == h.id
    assert h.result(timeout=20) == 3


def test_result_ttl_is_rqs_result_and_failure_ttl(client: anytask.Client, worker: WorkerProcess) -> None:
    adapter = client.adapter
    assert isinstance(adapter, RQAdapter)
    ok = client.submit(tasks.add.using(result_ttl=40.2), 1, 1)
    assert ok.result(timeout=20) == 2
    job = rq_job(client, ok.id)
    assert job.result_ttl == 41 and job.failure_ttl == 41  # whole seconds, rounded up
    for key in (Job.key_for(ok.id), f"rq:results:{ok.id}"):
        assert 35 < adapter.redis.ttl(key) <= 41
    bad = client.submit(tasks.fail.using(result_ttl=40), "x")
    with pytest.raises(TaskFailed):
        bad.result(timeout=20)
    assert 35 < adapter.redis.ttl(Job.key_for(bad.id)) <= 40


# -- broker down -----------------------------------------------------------------------------------


def _fails_fast(c: anytask.Client, bound: float) -> None:
    for call in (lambda: c.submit(tasks.add, 1, 2), lambda: c.status(uuid.uuid4().hex), c.adapter.ping):
        t0 = time.monotonic()
        with pytest.raises(BrokerUnavailable) as ei:
            call()
        assert time.monotonic() - t0 < bound
        assert "rq+redis://127.0.0.1:" in str(ei.value)


def test_broker_down_raises_within_the_connect_timeout() -> None:
    with anytask.connect("rq+redis://127.0.0.1:1/0?timeout=1") as c:  # nothing listens: refused at once
        _fails_fast(c, 1.5)


def test_silent_broker_does_not_hang() -> None:
    """A port that accepts TCP but never answers: bounded by the shared client's read timeout (5 s)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        with anytask.connect(f"rq+redis://127.0.0.1:{silent.getsockname()[1]}/0?timeout=1") as c:
            _fails_fast(c, 7.0)


# -- worker configurations and shutdown ------------------------------------------------------------


def test_worker_command_lines() -> None:
    adapter = _client(PREFIXED).adapter
    assert isinstance(adapter, RQAdapter)
    one = adapter.worker_argv(anytask.WorkerOptions(concurrency=1, queues=("a", "b")))
    assert one[0] == "worker" and "--with-scheduler" in one
    # priority emulation: RQ takes the first non-empty queue, so p9 of every queue comes first, plain ones last
    assert one[-20:] == [f"t_rq.{q}:p{p}" for p in range(9, 0, -1) for q in "ab"] + ["t_rq.a", "t_rq.b"]
    assert one[one.index("--serializer") + 1] == "rq.serializers.JSONSerializer"
    assert one[one.index("--job-class") + 1] == "anytask.adapters.rq.AnytaskJob"
    assert one[one.index("--worker-class") + 1] == "anytask.adapters.rq.AnytaskWorker"  # rq.Worker + signal fix
    pool = adapter.worker_argv(anytask.WorkerOptions(concurrency=3, config="tuned", extra=("-v",)))
    assert pool[:1] == ["worker-pool"] and pool[pool.index("--num-workers") + 1] == "3"
    assert pool[pool.index("--worker-class") + 1] == "anytask.adapters.rq.AnytaskSimpleWorker" and "-v" in pool
    rel = adapter.worker_argv(anytask.WorkerOptions(config="reliable"))
    assert rel[rel.index("--worker-class") + 1] == "anytask.adapters.rq.ReliableWorker"


@pytest.mark.parametrize("config,concurrency", [("tuned", 1), ("reliable", 2)])
def test_named_configs_run_tasks_and_stop_cleanly_on_sigterm(config: str, concurrency: int) -> None:
    """tuned = SimpleWorker (no fork per job), reliable = forking worker; prefix= names the RQ queues."""
    c = _client(PREFIXED)
    c.adapter.purge(["default"])
    name = f"anytask-{config}-{uuid.uuid4().hex[:8]}"
    extra = ["--name", name] if concurrency == 1 else []  # args after '--' reach `rq worker` untouched
    w = WorkerProcess(PREFIXED, tasks=["anytask.testing.tasks", THIS], concurrency=concurrency, config=config,
                      extra=extra, env=WORKER_ENV).start()
    try:
        w.wait_ready(c)
        adapter = c.adapter
        assert isinstance(adapter, RQAdapter)
        if extra:  # RQ's registry shows the worker under the name given after '--', on the prefixed queue
            named = [wk for wk in rq.Worker.all(connection=adapter.redis) if wk.name == name]
            assert len(named) == 1 and named[0].queue_names() == worker_queue_order(["t_rq.default"])
        h = c.submit(whoami)
        r = h.result(timeout=20)
        assert rq_job(c, h.id).origin == "t_rq.default"
        if config == "tuned" and concurrency == 1:
            assert r["pid"] == w.pid  # SimpleWorker runs the job in the worker process itself
        else:
            assert r["pid"] != w.pid
        assert c.submit(awhoami).result(timeout=20)["attempt"] == 1
        t = c.submit(tasks.sleep.using(timeout=1), 10)
        with pytest.raises(TaskFailed) as ei:
            t.result(timeout=20)
        assert ei.value.exc_type == "rq.timeouts.JobTimeoutException"
        # SIGTERM while a job runs: RQ's warm shutdown lets it finish, then the worker exits 0
        slow = c.submit(tasks.sleep, 1.5, "finished")
        deadline = time.monotonic() + 15
        while slow.status() is not Status.RUNNING and time.monotonic() < deadline:
            time.sleep(0.02)
        assert w.proc is not None
        w.proc.send_signal(signal.SIGTERM)
        assert w.proc.wait(20) == 0, w.output()
        assert slow.result(timeout=5) == "finished"
    finally:
        w.stop()
        c.adapter.purge(["default"])
        c.close()


def test_signal_to_the_whole_process_group_stops_the_pool() -> None:
    """Ctrl+C / docker stop signal every process at once; RQ's pubsub thread must not swallow it."""
    c = _client(PREFIXED)  # queues no other worker of this module consumes: ready means this pool
    try:
        for _ in range(3):
            w = WorkerProcess(PREFIXED, concurrency=2).start()
            try:
                w.wait_ready(c)
                assert w.proc is not None
                os.killpg(w.proc.pid, signal.SIGTERM)
                assert w.proc.wait(10) == 0, w.output()
            finally:
                w.stop()
    finally:
        c.adapter.purge(["default"])
        c.close()


def test_parse_exc_string() -> None:
    tb = ('Traceback (most recent call last):\n  File "x.py", line 1, in f\n    raise E("a: b")\n'
          'pkg.mod.E: a: b\nsecond line\n')
    e = parse_exc_string(tb)
    assert (e.type, e.message, e.traceback) == ("pkg.mod.E", "a: b\nsecond line", tb)
    assert parse_exc_string("Traceback (most recent call last):\nValueError\n").type == "ValueError"
    other = parse_exc_string("Work-horse terminated unexpectedly; waitpid returned 9 (signal 9); ")
    assert other.type == "anytask.adapters.rq.WorkerFailure" and other.message.startswith("Work-horse")
