"""``rq+redis://host:port/db``: RQ jobs, RQ's worker machinery, RQ's own job states.

* Jobs carry the facade's id and the task's real name as RQ's ``func_name``
  (``anytask.testing.tasks.add``), so RQ's worker log, ``Job.fetch`` and job descriptions show the task.
* Arguments, results and ``job.meta`` are JSON (``rq.serializers.JSONSerializer`` on both sides):
  nothing is ever unpickled.
* The worker runs with :class:`AnytaskJob` as its job class: when a job's ``func_name`` names an
  ``@anytask.task``, the function RQ calls is a thin wrapper that sets the TaskContext, runs the task
  through ``execution.call`` (JSON-checked result) and writes the failure's ErrorInfo into
  ``job.meta``. Coroutines are run by RQ itself (``Job._execute`` does ``asyncio.run``).
* RQ keeps the states (queued/scheduled/started/finished/failed...), so no extra state store is
  used; RETRYING is read from RQ's ``retries_left`` countdown.

URL parameters: ``prefix`` (prepended to RQ queue names), ``timeout`` (Redis connect timeout, s).
See docs/adapters/rq.md.
"""

from __future__ import annotations

import functools
import math
import re
import signal
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from rq import Queue, Retry, SimpleWorker, Worker
from rq.exceptions import DeserializationError
from rq.job import Job, JobStatus
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.utils import import_attribute

from ..facade import execution
from ..facade.adapter import Adapter, WorkerOptions
from ..facade.capabilities import Capabilities, Feature, native, unsupported
from ..facade.errors import ConfigurationError, ResultTimeout, TaskNotRegistered
from ..facade.records import ErrorInfo, Message, TaskResult
from ..facade.state import DEFAULT_TTL
from ..facade.status import Status
from ..facade.task import Task, get_task
from ..facade.url import BackendURL
from ._redis_state import broker_errors, connect

SERIALIZER = "rq.serializers.JSONSerializer"
JOB_CLASS = "anytask.adapters.rq.AnytaskJob"
RESULT_TTL = int(DEFAULT_TTL)  # RQ keeps results 500 s and failures 1 year by default: one week for both
META_RETRIES = "anytask_retries"  # retries asked at submit (the worker's Task may differ after .using())
META_ERROR = "anytask_error"  # ErrorInfo dict + "attempt", written by the worker wrapper on failure

_STATUS = {  # RQ JobStatus value -> Status (string keys: RQ 2.x lacks the last two)
    "queued": Status.QUEUED,
    "scheduled": Status.SCHEDULED,
    "started": Status.RUNNING,
    "finished": Status.SUCCEEDED,
    "failed": Status.FAILED,
    "stopped": Status.CANCELLED,  # killed by an RQ stop-job command
    "canceled": Status.CANCELLED,
    "deferred": Status.QUEUED,  # waiting for dependencies (anytask creates none yet)
    "created": Status.QUEUED,
    "rate_limited": Status.QUEUED,
    "ready_to_enqueue": Status.QUEUED,
}


class WorkerFailure(Exception):
    """The type reported when RQ failed a job outside the task (e.g. the work horse was killed)."""


# -- worker side ---------------------------------------------------------------------------------


def _attempt(job: Job) -> int:
    """The 1-based number of the run in progress (or of the last run), from RQ's retries_left countdown."""
    retries = int(job.meta.get(META_RETRIES, 0) or 0)
    left = job.retries_left if retries and job.retries_left is not None else retries
    return retries - left + 1


def _resolve(name: str) -> Any:
    try:
        return get_task(name)
    except TaskNotRegistered:
        pass
    try:
        return import_attribute(name)  # RQ's own resolution: a module path
    except (ImportError, ValueError, AttributeError):
        raise TaskNotRegistered(f"task {name!r} is not registered in this worker; start it with --tasks naming "
                                f"the module that defines it (e.g. --tasks {name.rpartition('.')[0] or name})") from None


def _record_failure(job: Job, exc: BaseException, attempt: int) -> None:
    job.meta[META_ERROR] = {**ErrorInfo.from_exception(exc).to_dict(), "attempt": attempt}
    try:
        job.save_meta()  # type: ignore[no-untyped-call]
    except redis.RedisError:  # the failure itself is still recorded by RQ (exc_string)
        pass


def _run_sync(job: Job, task: Task[Any, Any], *args: Any, **kwargs: Any) -> Any:
    attempt = _attempt(job)
    try:
        with execution.task_context(execution.TaskContext(job.id, task.name, attempt)):
            return execution.call(task, args, kwargs)
    except Exception as exc:
        _record_failure(job, exc, attempt)
        raise


async def _run_async(job: Job, task: Task[Any, Any], args: Any, kwargs: Any) -> Any:
    attempt = _attempt(job)
    try:
        with execution.task_context(execution.TaskContext(job.id, task.name, attempt)):
            return await execution.acall(task, args, kwargs)
    except Exception as exc:
        _record_failure(job, exc, attempt)
        raise


class AnytaskJob(Job):
    """RQ's job class for anytask workers (``rq worker --job-class anytask.adapters.rq.AnytaskJob``).

    ``func`` resolves ``func_name`` to the ``@anytask.task`` and returns the wrapper RQ calls; for
    an ``async def`` task the wrapper returns a coroutine, which ``Job._execute`` runs with
    ``asyncio.run`` (RQ's native coroutine support). Plain functions run as RQ would run them.
    """

    @property
    def func(self) -> Any:
        if self.instance is not None:  # an RQ job on a bound method: RQ's own resolution
            return Job.func.fget(self)  # type: ignore[attr-defined]
        target = _resolve(self.func_name or "")
        if not isinstance(target, Task):
            return Job.func.fget(self)  # type: ignore[attr-defined]
        if target.is_async:
            return lambda *a, **kw: _run_async(self, target, a, kw)
        return functools.partial(_run_sync, self, target)


class _SignalsToMainThread:
    """Keep SIGTERM/SIGINT/SIGALRM off RQ's pubsub thread.

    RQ 3's worker runs a pubsub thread blocked in ``recv()`` while the main thread blocks in BLMOVE
    (up to ``worker_ttl - 15`` = 405 s). A process-directed signal the kernel hands to the pubsub thread
    does not interrupt the main thread, so the worker's shutdown handler waits until BLMOVE returns:
    seen when SIGTERM and SIGINT arrive together (a signal to the whole process group: Ctrl+C,
    ``docker stop``, timeout(1)), 2 of 9 such stops hung in testing. Threads inherit the signal mask of
    their creator: block the signals while RQ starts the thread, so the kernel delivers them to the
    main thread (SIGALRM too: SimpleWorker's time limit is a SIGALRM in the main thread).
    """

    def subscribe(self) -> None:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGALRM})
        try:
            super().subscribe()  # type: ignore[misc]
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


class AnytaskWorker(_SignalsToMainThread, Worker):
    """``rq.Worker`` (RQ's default: a forked work horse per job) with the pubsub signal fix."""


class AnytaskSimpleWorker(_SignalsToMainThread, SimpleWorker):
    """``rq.SimpleWorker``: jobs run in the worker process itself, no fork per job."""


class ReliableWorker(AnytaskWorker):
    """``AnytaskWorker`` that runs RQ's maintenance every 60 s instead of every 10 min, so a job
    abandoned by a dead worker is retried (retries_left) or failed sooner."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.maintenance_interval = min(self.maintenance_interval, 60)


WORKER_CLASSES = {
    "defaults": f"{__name__}.AnytaskWorker",
    "tuned": f"{__name__}.AnytaskSimpleWorker",
    "reliable": f"{__name__}.ReliableWorker",
}


# -- reading -------------------------------------------------------------------------------------


def _ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


_EXC_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<msg>.*))?$")


def parse_exc_string(exc_string: str) -> ErrorInfo:
    """ErrorInfo from RQ's failure text, used when the wrapper could not write one (e.g. a killed horse).

    A Python traceback ends with ``module.Class: message`` (the message may span lines); anything
    else (``Work-horse terminated unexpectedly ...``) is reported as :class:`WorkerFailure`.
    """
    if "Traceback (most recent call last):" in exc_string:
        lines = exc_string.rstrip().splitlines()
        for i in range(len(lines) - 1, 0, -1):
            m = _EXC_LINE.match(lines[i])
            if m and not lines[i].startswith("Traceback"):
                msg = "\n".join([m["msg"] or "", *lines[i + 1:]]).strip()
                return ErrorInfo(m["type"], msg, exc_string)
    return ErrorInfo(f"{__name__}.WorkerFailure", exc_string.strip() or "RQ failed the job", exc_string)


class RQAdapter(Adapter):
    capabilities = Capabilities(
        features={
            Feature.RETRIES: native("rq.Retry(max=retries, interval=[backoff * 2**i ...]): RQ re-queues the "
                                    "job (backoff 0) or schedules it for its scheduler"),
            Feature.TIMEOUT: native("job_timeout (SIGALRM death penalty in the work horse), whole seconds "
                                    "rounded up; no timeout = -1 (RQ's default would be 180 s)"),
            Feature.QUEUES: native("RQ queues (URL param prefix= is prepended to the names)"),
            Feature.ASYNC_TASKS: native("RQ's Job._execute runs a coroutine function with asyncio.run"),
            Feature.DELAY: native("Queue.schedule_job into RQ's ScheduledJobRegistry (status scheduled); "
                                  "the worker runs RQ's scheduler (--with-scheduler), 1 s resolution"),
            Feature.PRIORITY: unsupported("not wired in anytask yet; RQ has no priorities, only "
                                          "enqueue at_front and queue order"),
            Feature.CANCEL: unsupported("not wired in anytask yet; RQ has job.cancel() and "
                                        "send_stop_job_command"),
            Feature.PROGRESS: unsupported("not wired in anytask yet; RQ has job.meta + save_meta()"),
            Feature.CHAIN: unsupported("not wired in anytask yet; RQ has depends_on"),
            Feature.GROUP: unsupported("not wired in anytask yet; RQ has rq.group.Group"),
            Feature.CHORD: unsupported("not wired in anytask yet; RQ has depends_on with several jobs"),
            Feature.RATE_LIMIT: unsupported("not wired in anytask yet; RQ 3 has rq.RateLimit (concurrency "
                                            "limits)"),
            Feature.UNIQUE: unsupported("not wired in anytask yet; RQ has enqueue(unique=True) on job ids"),
            Feature.RESULT_TTL: unsupported("not wired in anytask yet; RQ has result_ttl/failure_ttl per job "
                                            "(anytask sets both to 7 days)"),
            Feature.PERIODIC: unsupported("not wired in anytask yet; RQ has rq.cron / Repeat"),
        },
        needs_worker=True,
        delivery="at-most-once (a job whose worker dies mid-run is failed as abandoned, or retried "
                 "if it has retries left)",
        brokers=("redis",),
    )

    def __init__(self, url: BackendURL) -> None:
        super().__init__(url)
        if url.transport != "redis":
            raise ConfigurationError(f"RQ needs Redis: use rq+redis://HOST:PORT/DB, not {url.masked}")
        self.prefix = url.params.get("prefix", "")
        # replies bounded too (a silent port fails fast), but above the 1 s blocking wait of result reads
        self.redis = connect(url.broker_url, self.connect_timeout, read_timeout=max(self.connect_timeout, 1.5))
        self._queues: dict[str, Queue] = {}

    def queue_name(self, name: str) -> str:
        return self.prefix + name

    def _queue(self, name: str) -> Queue:
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = Queue(self.queue_name(name), connection=self.redis, serializer=JSONSerializer)
        return q

    # -- producer side ---------------------------------------------------------------------------
    def submit(self, task: Task[Any, Any], message: Message) -> None:
        o = task.options
        retry = None
        if o.retries:
            intervals = [o.retry_backoff * 2 ** i for i in range(o.retries)]
            retry = Retry(max=o.retries, interval=intervals if any(intervals) else 0)
        queue = self._queue(message.queue)
        eta = message.options.get("eta")
        with broker_errors(f"submitting {task.name}", self.url.raw):
            job = queue.create_job(
                task.name, args=list(message.args), kwargs=dict(message.kwargs), job_id=message.id,
                timeout=math.ceil(o.timeout) if o.timeout else -1, result_ttl=RESULT_TTL, failure_ttl=RESULT_TTL,
                meta={META_RETRIES: o.retries} if o.retries else None, retry=retry,
                status=JobStatus.SCHEDULED if eta is not None else JobStatus.QUEUED)
            job.created_at = datetime.fromtimestamp(message.enqueued_at, tz=UTC)
            with self.redis.pipeline() as pipe:  # one MULTI/EXEC: job hash + queue (or schedule) together
                if eta is not None:
                    queue.schedule_job(job, datetime.fromtimestamp(eta, tz=UTC), pipeline=pipe)
                else:
                    queue.enqueue_job(job, pipeline=pipe)
                pipe.execute()

    def get(self, task_id: str) -> TaskResult:
        with broker_errors("reading a task", self.url.raw), self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(Job.key_for(task_id))
            pipe.xrevrange(Result.get_key(task_id), "+", "-", count=1)  # type: ignore[no-untyped-call]
            raw, results = pipe.execute()
        if not raw:
            return TaskResult.unknown(task_id)
        job = Job(task_id, connection=self.redis, serializer=JSONSerializer)
        job.restore(raw)
        rq_status = str(job.get_status(refresh=False).value)
        status = _STATUS.get(rq_status, Status.QUEUED)
        retries = int(job.meta.get(META_RETRIES, 0) or 0)
        left = job.retries_left if retries and job.retries_left is not None else retries
        if status in (Status.QUEUED, Status.SCHEDULED) and left < retries:
            status = Status.RETRYING  # RQ re-queued or re-scheduled the job after a failed attempt
        try:
            name: str | None = job.func_name
        except DeserializationError:
            name = None
        if status in (Status.QUEUED, Status.SCHEDULED):
            attempts = 0
        elif status is Status.RETRYING:
            attempts = retries - left
        else:
            attempts = retries - left + 1
        fields: dict[str, Any] = {
            "id": task_id, "status": status, "task_name": name, "attempts": attempts,
            "enqueued_at": _ts(job.created_at), "started_at": _ts(job.started_at),
            "finished_at": _ts(job.ended_at) if status.finished else None}
        latest = None
        if results:
            result_id, payload = results[0]
            try:
                latest = Result.restore(task_id, result_id.decode(), payload, connection=self.redis,
                                        serializer=JSONSerializer)
            except ValueError:  # not JSON: written by a non-anytask producer; never unpickle
                latest = None
        if status is Status.SUCCEEDED and latest is not None and latest.type == Result.Type.SUCCESSFUL:
            fields.update(value=latest.return_value, has_value=True)
        elif status in (Status.FAILED, Status.RETRYING, Status.CANCELLED):
            fields["error"] = self._error(job, latest, attempts)
            if rq_status == "stopped":
                fields["note"] = "stopped by an RQ stop-job command"
        return TaskResult(**fields)

    def wait(self, task_id: str, timeout: float | None) -> TaskResult:
        """Block on the job's result stream (XREAD BLOCK, as RQ's ``job.latest_result(timeout=)``) between
        reads of the state, instead of polling: the worker's XADD of the result wakes the waiter."""
        deadline = None if timeout is None else time.monotonic() + timeout
        key = Result.get_key(task_id)  # type: ignore[no-untyped-call]
        seen: Any = None
        while True:
            res = self.get(task_id)
            if res.finished:
                return res
            left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if left <= 0:
                raise ResultTimeout(f"task {task_id} not finished after {timeout}s (status {res.status.value})")
            if seen:  # a result entry exists yet the job is not finished (e.g. a repeat): do not spin
                time.sleep(min(0.05, left))
            with broker_errors("waiting for a task", self.url.raw):
                seen = self.redis.xread({key: "0-0"}, count=1, block=max(1, int(left * 1000)))

    @staticmethod
    def _error(job: Job, latest: Result | None, attempt: int) -> ErrorInfo | None:
        recorded = job.meta.get(META_ERROR)
        if isinstance(recorded, dict) and recorded.get("attempt") == attempt:
            return ErrorInfo.from_dict(recorded)
        if latest is not None and latest.exc_string:
            return parse_exc_string(latest.exc_string)
        if isinstance(recorded, dict):
            return ErrorInfo.from_dict(recorded)
        return None

    def ping(self) -> None:
        with broker_errors("ping", self.url.raw):
            self.redis.ping()

    def close(self) -> None:
        self.redis.close()

    def purge(self, queues: Sequence[str] = ("default",)) -> None:
        """Empty the queues and delete their jobs and results from RQ's registries."""
        with broker_errors("purging", self.url.raw):
            for name in queues:
                q = self._queue(name)
                q.empty()  # type: ignore[no-untyped-call]
                registries = [q.scheduled_job_registry, q.finished_job_registry, q.failed_job_registry,
                              q.deferred_job_registry, q.canceled_job_registry]
                with self.redis.pipeline() as pipe:
                    for reg in registries:
                        for job_id in reg.get_job_ids(cleanup=False):
                            pipe.delete(Job.key_for(job_id), Result.get_key(job_id))  # type: ignore[no-untyped-call]
                        pipe.delete(reg.key)
                    pipe.execute()

    # -- worker side -----------------------------------------------------------------------------
    def worker_argv(self, options: WorkerOptions) -> list[str]:
        """The ``rq`` command line (without the program name) run_worker executes in-process."""
        worker_class = WORKER_CLASSES.get(options.config)
        if worker_class is None:
            raise ConfigurationError(f"unknown worker config {options.config!r}; use one of {sorted(WORKER_CLASSES)}")
        if options.concurrency < 1:
            raise ConfigurationError("--concurrency must be at least 1")
        common = ["--url", self.url.broker_url, "--serializer", SERIALIZER, "--job-class", JOB_CLASS,
                  "--worker-class", worker_class]
        if options.config == "tuned":
            common.append("--quiet")
        queues = [self.queue_name(q) for q in options.queues]
        if options.concurrency == 1:
            return ["worker", *common, "--with-scheduler", *options.extra, *queues]
        # rq worker-pool always starts its workers with the scheduler
        return ["worker-pool", *common, "--num-workers", str(options.concurrency), *options.extra, *queues]

    def run_worker(self, tasks: Sequence[Task[Any, Any]], options: WorkerOptions) -> int:
        """Run ``rq worker`` / ``rq worker-pool`` (RQ's click CLI) in this process, where the task
        modules are imported, so every task resolves by name in the work horses (forked from here)."""
        import click  # RQ's CLI is click-based
        from rq.cli.cli import main as rq_main  # importing rq.cli registers `worker` and `worker-pool`

        argv = self.worker_argv(options)
        try:
            rv = rq_main.main(args=argv, prog_name="rq", standalone_mode=False)
        except click.ClickException as exc:
            exc.show()
            return exc.exit_code
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except KeyboardInterrupt:
            return 130
        return rv if isinstance(rv, int) else 0


__all__ = ["AnytaskJob", "AnytaskSimpleWorker", "AnytaskWorker", "RQAdapter", "ReliableWorker", "WorkerFailure",
           "parse_exc_string"]
