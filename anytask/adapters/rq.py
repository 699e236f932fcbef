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
  used; RETRYING is read from RQ's ``retries_left`` countdown. Progress lives in ``job.meta``.
* CANCEL: ``job.cancel()`` for waiting jobs, RQ's stop-job command for running ones, plus a cancel flag
  the wrapper reads before the task body. PRIORITY: one RQ queue per level (``<queue>:pN``), consumed in
  order. RATE_LIMIT: RedisRateLimiter in the worker class, over-limit jobs go back to RQ's schedule.

URL parameters: ``prefix`` (prepended to RQ queue names), ``timeout`` (Redis connect timeout, s).
See docs/adapters/rq.md.
"""

from __future__ import annotations

import functools
import math
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from rq import Queue, Retry, SimpleWorker, Worker
from rq.command import send_stop_job_command
from rq.exceptions import DeserializationError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.utils import import_attribute

from ..facade import execution
from ..facade.adapter import Adapter, WorkerOptions
from ..facade.beat import emulated_how
from ..facade.schedule import Schedule  # --beat native (native_beat)
from ..facade.capabilities import Capabilities, Feature, emulated, native, unsupported
from ..facade.continuation import emulated_canvas, serve_canvas
from ..facade.errors import BrokerUnavailable, ConfigurationError, ResultTimeout, TaskNotRegistered
from ..facade.records import CancelOutcome, CancelResult, ErrorInfo, Message, TaskResult
from ..facade.patience import patiently
from ..facade.state import DEFAULT_TTL
from ..facade.status import Status
from ..facade.task import Task, get_task, parse_rate
from ..facade.url import BackendURL
from ._delivery import install_redis_guard, seconds_param
from ._redis_state import RedisRateLimiter, RedisStateStore, broker_errors, connect

SERIALIZER = "rq.serializers.JSONSerializer"
JOB_CLASS = "anytask.adapters.rq.AnytaskJob"
RESULT_TTL = int(DEFAULT_TTL)  # RQ keeps results 500 s and failures 1 year by default: one week for both
META_RETRIES = "anytask_retries"  # retries asked at submit (the worker's Task may differ after .using())
META_ERROR = "anytask_error"  # ErrorInfo dict + "attempt", written by the worker wrapper on failure
META_PROGRESS = "anytask_progress"  # the last anytask.progress() of the task
META_RATE = "anytask_rate"  # {"rate": "5/s", "key": limiter key} when the submit asked a rate limit
META_DEFERRED = "anytask_rate_deferred"  # unix time until which the worker put the job back (rate limit)
META_CANCEL = "anytask_cancel"  # "skipped": the worker found the cancel flag and never ran the task
CANCEL_FLAG = "anytask:rq:cancel:"  # + job id: set by cancel() before anything else, read by the wrapper
RATE_KEY = "anytask:rq:rate:"  # + URL prefix + task name: RedisRateLimiter's sliding window
PRIORITY_LEVELS = range(9, 0, -1)  # priority N > 0 -> RQ queue "<queue>:pN"; 0/None -> "<queue>" itself
STOP_SIGNAL = signal.SIGUSR1  # tuned config (SimpleWorker): interrupts the task body in the worker process

_STATUS = {  # RQ JobStatus value -> Status (string keys: RQ 2.x lacks the last two)
    "queued": Status.QUEUED,
    "scheduled": Status.SCHEDULED,
    "started": Status.RUNNING,
    "finished": Status.SUCCEEDED,
    "failed": Status.FAILED,
    "stopped": Status.CANCELLED,  # killed by an RQ stop-job command, or skipped because cancelled
    "canceled": Status.CANCELLED,
    "deferred": Status.QUEUED,  # waiting for dependencies (anytask creates none yet)
    "created": Status.QUEUED,
    "rate_limited": Status.QUEUED,
    "ready_to_enqueue": Status.QUEUED,
}


class WorkerFailure(Exception):
    """The type reported when RQ failed a job outside the task (e.g. the work horse was killed)."""


class CancelledBeforeStart(Exception):
    """Raised by the worker wrapper instead of running a task whose cancel flag is set."""


class StopRequested(BaseException):
    """Raised inside the task body of a SimpleWorker by an RQ stop-job command (BaseException: a task's
    ``except Exception`` does not swallow it; RQ's perform_job catches everything)."""


def priority_queue(name: str, priority: int | None) -> str:
    """The RQ queue of a (prefixed) queue name and a facade priority: 0/None -> ``name``, N -> ``name:pN``.

    ``:`` cannot appear in a facade queue name, so a priority queue never collides with a user queue."""
    return f"{name}:p{priority}" if priority else name


def worker_queue_order(names: Sequence[str]) -> list[str]:
    """The RQ queues a worker listens to, in RQ's (strict, first non-empty wins) order:
    priority 9 of every queue, then 8, ... then 1, then the plain queues (priority 0 / none)."""
    return [priority_queue(n, p) for p in PRIORITY_LEVELS for n in names] + list(names)


# -- worker side ---------------------------------------------------------------------------------

_skipped: set[str] = set()  # job ids the wrapper refused to run in this process (cancelled before start)
_body: list[str | None] = [None]  # the job whose task body runs in this process now (SimpleWorker stop)


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


def _save_progress(job: Job, data: dict[str, Any]) -> None:
    job.meta[META_PROGRESS] = data
    job.save_meta()  # type: ignore[no-untyped-call]  # HSET of the meta field only


def _refuse_if_cancelled(job: Job) -> None:
    """The last check before the task body: a job cancelled while a worker held it is never run."""
    if job.connection.exists(CANCEL_FLAG + job.id):
        job.meta[META_CANCEL] = "skipped"
        job.save_meta()  # type: ignore[no-untyped-call]
        _skipped.add(job.id)  # the worker class turns the failure into RQ's STOPPED
        raise CancelledBeforeStart(f"job {job.id} was cancelled before it started")


def _context(job: Job, task: Task[Any, Any], attempt: int) -> execution.TaskContext:
    return execution.TaskContext(job.id, task.name, attempt, functools.partial(_save_progress, job))


def _run_sync(job: Job, task: Task[Any, Any], *args: Any, **kwargs: Any) -> Any:
    _refuse_if_cancelled(job)
    attempt = _attempt(job)
    _body[0] = job.id
    try:
        with execution.task_context(_context(job, task, attempt)):
            return execution.call(task, args, kwargs)
    except Exception as exc:
        _record_failure(job, exc, attempt)
        raise
    finally:
        _body[0] = None


async def _run_async(job: Job, task: Task[Any, Any], args: Any, kwargs: Any) -> Any:
    _refuse_if_cancelled(job)
    attempt = _attempt(job)
    _body[0] = job.id
    try:
        with execution.task_context(_context(job, task, attempt)):
            return await execution.acall(task, args, kwargs)
    except Exception as exc:
        _record_failure(job, exc, attempt)
        raise
    finally:
        _body[0] = None


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


def _defer_for_rate_limit(worker: Any, job: Job, queue: Queue) -> bool:
    """Before a job runs: take a slot of its task's rate limit, or put the job back into RQ's
    ScheduledJobRegistry until the window has room (RQ's scheduler re-queues it; no slot is held)."""
    spec = job.meta.get(META_RATE)
    if not isinstance(spec, dict):
        return False
    try:
        count, period = parse_rate(str(spec.get("rate")))
        limiter = RedisRateLimiter(worker.connection, prefix=RATE_KEY)
        wait = limiter.acquire(str(spec.get("key") or job.func_name), count, period, uuid.uuid4().hex)
    except (ConfigurationError, BrokerUnavailable, redis.RedisError) as exc:  # never kill the worker loop
        worker.log.warning("Worker %s: rate limit of job %s not applied: %s", worker.name, job.id, exc)
        return False
    if wait <= 0:
        return False
    job.meta[META_DEFERRED] = time.time() + wait
    with worker.connection.pipeline() as pipe:
        at = datetime.fromtimestamp(math.ceil(time.time() + wait), tz=UTC)  # RQ truncates to whole seconds
        queue.schedule_job(job, at, pipeline=pipe)  # saves the meta too
        pipe.lrem(queue.intermediate_queue_key, 1, job.id)  # the single-queue dequeue path (BLMOVE)
        pipe.execute()
    worker.log.debug("Worker %s: job %s over its rate limit, back in %.2fs", worker.name, job.id, wait)
    return True


class _AnytaskWorkerMixin:
    """What every anytask RQ worker class adds to RQ's:

    * **rate limits**: ``execute_job`` first takes a slot of the job's rate limit (or defers the job);
    * **cancel**: a job the wrapper refused to run (cancel flag) ends as RQ's ``stopped``, not failed;
    * **signals**: SIGTERM/SIGINT/SIGALRM are kept off RQ's pubsub thread.

    RQ 3's worker runs a pubsub thread blocked in ``recv()`` while the main thread blocks in BLMOVE
    (up to ``worker_ttl - 15`` = 405 s). A process-directed signal the kernel hands to the pubsub thread
    does not interrupt the main thread, so the worker's shutdown handler waits until BLMOVE returns:
    seen when SIGTERM and SIGINT arrive together (a signal to the whole process group: Ctrl+C,
    ``docker stop``, timeout(1)), 2 of 9 such stops hung in testing. Threads inherit the signal mask of
    their creator: block the signals while RQ starts the thread, so the kernel delivers them to the
    main thread (SIGALRM too: SimpleWorker's time limit is a SIGALRM in the main thread).
    """

    _stopped_job_id: str | None  # RQ's BaseWorker attribute: the job a stop-job command asked to stop

    def subscribe(self) -> None:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGALRM})
        try:
            super().subscribe()  # type: ignore[misc]
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def execute_job(self, job: Job, queue: Queue) -> None:
        if _defer_for_rate_limit(self, job, queue):
            return
        super().execute_job(job, queue)  # type: ignore[misc]

    def handle_job_failure(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        if job.id in _skipped:
            _skipped.discard(job.id)
            self._stopped_job_id = job.id  # RQ then marks it STOPPED and never retries it
        _patiently(lambda: super(_AnytaskWorkerMixin, self).handle_job_failure(job, queue, *args, **kwargs),  # type: ignore[misc]
                   f"recording the failure of job {job.id}")

    # A job ending while Redis restarts: RQ's end-of-job writes raise ConnectionError, the work horse
    # exits and the job stays "started" for ever (seen in the broker-restart fault test). These writes
    # are retried for up to WORKER_PATIENCE s instead (they are RQ's own, idempotent pipelines).
    def handle_execution_ended(self, *args: Any, **kwargs: Any) -> None:
        _patiently(lambda: super(_AnytaskWorkerMixin, self).handle_execution_ended(*args, **kwargs),  # type: ignore[misc]
                   "ending an execution")

    def handle_job_success(self, job: Job, *args: Any, **kwargs: Any) -> None:
        _patiently(lambda: super(_AnytaskWorkerMixin, self).handle_job_success(job, *args, **kwargs),  # type: ignore[misc]
                   f"recording the success of job {job.id}")


def _patiently(write: Callable[[], None], what: str) -> None:
    patiently(write, what, retry_on=(redis.ConnectionError, redis.TimeoutError))


class AnytaskWorker(_AnytaskWorkerMixin, Worker):
    """``rq.Worker`` (RQ's default: a forked work horse per job) with anytask's additions."""


class AnytaskSimpleWorker(_AnytaskWorkerMixin, SimpleWorker):
    """``rq.SimpleWorker``: jobs run in the worker process itself, no fork per job.

    RQ's SimpleWorker ignores stop-job commands (there is no horse to kill); here the command interrupts
    the task body like SimpleWorker's own time limit does (a signal to the main thread whose handler
    raises), but only while the body of the job to stop runs, never inside RQ's bookkeeping.
    """

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()  # type: ignore[no-untyped-call]
        signal.signal(STOP_SIGNAL, self._stop_body)

    def _stop_body(self, signum: int, frame: Any) -> None:
        if _body[0] is not None and _body[0] == self._stopped_job_id:
            raise StopRequested(f"job {_body[0]} stopped by an RQ stop-job command")

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if _body[0] is not None and _body[0] == self._stopped_job_id:  # called from the pubsub thread
            signal.pthread_kill(threading.main_thread().ident, STOP_SIGNAL)  # type: ignore[arg-type]


class _ReliableQueue(Queue):
    """RQ's ``Queue`` whose multi-queue dequeue also moves the job into the queue's intermediate list.

    Trap: RQ dequeues from one queue with BLMOVE into ``<queue>:intermediate`` (so a worker killed
    between the pop and the job's start leaves the job findable), but from several queues with plain
    BLPOP (the job is then gone if the worker dies in that window). anytask's priority emulation
    always gives a worker several RQ queues, so the reliable worker takes jobs with LMOVE in queue
    order and blocks with a short BLMOVE on the last (plain) queue: a job on a priority queue that
    arrives while the worker is idle waits at most ``IDLE_POLL_S`` longer than on RQ's BLPOP."""

    IDLE_POLL_S = 0.2

    @classmethod
    def lpop(cls, queue_keys: Sequence[str], timeout: int | None, connection: Any = None) -> Any:
        if timeout is None or len(queue_keys) < 2:
            return super().lpop(queue_keys, timeout, connection=connection)
        from rq.exceptions import DequeueTimeout
        from rq.intermediate_queue import IntermediateQueue

        deadline = time.monotonic() + timeout
        while True:
            for key in queue_keys:
                job_id = connection.lmove(key, IntermediateQueue.get_intermediate_queue_key(key), "LEFT", "RIGHT")
                if job_id is not None:
                    return key, job_id
            left = deadline - time.monotonic()
            if left <= 0:
                raise DequeueTimeout(timeout, queue_keys)
            key = queue_keys[-1]
            job_id = connection.blmove(key, IntermediateQueue.get_intermediate_queue_key(key),
                                       min(left, cls.IDLE_POLL_S), "LEFT", "RIGHT")
            if job_id is not None:
                return key, job_id


class ReliableWorker(AnytaskWorker):
    """``AnytaskWorker`` for at-least-once delivery (Delivery and faults, issue 7; docs/adapters/rq.md).

    RQ keeps a running job in the StartedJobRegistry with a score its worker refreshes every
    ``job_monitoring_interval`` (the heartbeat); once the score is past, RQ's maintenance treats the job
    as abandoned and *fails* it (AbandonedJobError) unless it has retries left. This worker requeues an
    abandoned job instead (one extra retry granted just before RQ's own cleanup, which then re-enqueues
    it), and shortens the clock: the heartbeat lapses ``heartbeat_timeout`` s (URL param, RQ's default
    90) after a dead worker's last beat, maintenance runs every ``heartbeat_timeout / 2`` s (at most 60).
    A live worker keeps beating while its job runs, so a long job is not requeued under it. The delivery
    guard bounds the requeues of a job that kills its worker every time."""

    heartbeat_timeout = 90.0  # set by RQAdapter.run_worker from the URL

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue_class = _ReliableQueue  # after RQ's CLI passed its own (rq.Queue) to the constructor
        ht = self.heartbeat_timeout
        self.maintenance_interval = int(max(1, min(self.maintenance_interval, 60, ht / 2)))
        self.job_monitoring_interval = int(max(1, min(self.job_monitoring_interval, ht / 3)))

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        # RQ removes the job from its intermediate list only when the worker has one queue; this
        # worker moves it there on every dequeue (_ReliableQueue), so always.
        super().prepare_job_execution(job, remove_from_intermediate_queue=True)

    def _requeue_stuck(self, queue: Queue) -> None:
        """Put back at the head of its queue a job a dead worker popped but never started.

        RQ's own cleanup *fails* such a job after a minute ("stuck in intermediate queue"). Here a job
        seen in the intermediate list, not started, at two maintenance passes ``heartbeat_timeout`` s
        apart goes back to the queue (a live worker starts a job milliseconds after its pop)."""
        from rq.utils import now

        iq = queue.intermediate_queue
        for job_id in iq.get_job_ids():
            if job_id in queue.started_job_registry:
                continue
            if queue.fetch_job(job_id) is None:
                iq.remove(job_id)
                continue
            if iq.set_first_seen(job_id):
                continue
            first = iq.get_first_seen(job_id)
            if first is not None and (now() - first).total_seconds() >= self.heartbeat_timeout:
                with self.connection.pipeline() as pipe:
                    pipe.lrem(iq.key, 1, job_id)
                    pipe.lpush(queue.key, job_id)
                    pipe.delete(iq.get_first_seen_key(job_id))
                    pipe.execute()
                self.log.warning("job %s popped by a dead worker before it started: requeued (at-least-once)",
                                 job_id)

    @property
    def dequeue_timeout(self) -> int:
        """Trap: an idle RQ worker blocks in BLPOP for worker_ttl - 15 = 405 s and runs maintenance only
        between two dequeues; wake up every maintenance interval instead."""
        return int(max(1, min(super().dequeue_timeout, self.maintenance_interval)))

    def get_heartbeat_ttl(self, job: Job, elapsed_execution_time: float = 0.0) -> int:
        return int(max(self.job_monitoring_interval + 1, self.heartbeat_timeout))

    def clean_registries(self) -> None:
        """RQ's ``Worker.clean_registries`` with two changes: abandoned jobs get one more retry just before
        RQ's cleanup (which then re-enqueues them), and the per-queue maintenance lock expires after
        ``max(10, 2 x maintenance_interval)`` s instead of RQ's 899: a worker killed while cleaning would
        otherwise stop every requeue for 15 minutes."""
        from rq import worker_registration
        from rq.registry import clean_registries
        from rq.utils import now

        ttl = int(max(10, 2 * self.maintenance_interval))
        for queue in self.queues:
            if not self.connection.set(queue.registry_cleaning_key, 1, nx=True, ex=ttl):
                continue
            for job_id in queue.started_job_registry.get_expired_job_ids():
                job = queue.fetch_job(job_id)
                if job is not None and job.get_status(refresh=False) == JobStatus.STARTED:
                    self.connection.hincrby(job.key, "retries_left", 1)  # RQ's cleanup below retries it
                    self.log.warning("job %s abandoned by a dead worker: requeued (at-least-once)", job_id)
            clean_registries(queue, self._exc_handlers)
            worker_registration.clean_worker_registry(queue)
            self._requeue_stuck(queue)
            queue.release_maintenance_lock()
        self.last_cleaned_at = now()


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
                if m["type"] == "rq.exceptions.DeserializationError" and not msg:  # security: see docs/security.md
                    msg = ("the job's data is not JSON: anytask's RQ worker reads only JSON, so a job enqueued "
                           "with RQ's pickle serializer (or by another program) is failed, never unpickled")
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
                                  "the worker runs RQ's scheduler (--with-scheduler). RQ keeps whole seconds, "
                                  "truncated: the ETA is rounded up, so a job never starts early; 0-2 s late"),
            Feature.PRIORITY: emulated(
                "RQ has no priorities; its documented way is several queues a worker consumes in order: "
                "priority N>0 goes to RQ queue '<queue>:pN', 0/None to '<queue>', and the worker listens to "
                "p9..p1 of all its queues, then the plain ones (RQ takes the first non-empty queue); exact "
                "for the 10 levels. Weaker: a worker of several RQ queues dequeues with BLPOP, not BLMOVE "
                "into RQ's intermediate queue, so a worker killed between the pop and the job's start loses "
                "the job (stays QUEUED) instead of failing it"),
            Feature.CANCEL: native(
                "queued/scheduled: removed from RQ's queue or ScheduledJobRegistry (MULTI) then job.cancel() "
                "(status canceled); running: rq.command.send_stop_job_command (the work horse is killed, "
                "status stopped; in the tuned SimpleWorker a signal interrupts the task body). A cancel flag "
                "the worker wrapper reads before the task body covers a job a worker already holds, so a "
                "job cancelled before start never runs. cancel() waits up to 5 s for the worker to confirm "
                "a stop, else answers NOT_INTERRUPTIBLE (e.g. a plain rq SimpleWorker, which ignores stop-job)"),
            Feature.PROGRESS: native("job.meta['anytask_progress'] + job.save_meta() (one HSET of the meta "
                                     "field) from the worker wrapper"),
            **emulated_canvas({
                Feature.CHAIN: "RQ's depends_on only orders jobs: the dependent job gets no argument from its dependency",
                Feature.GROUP: "rq.group.Group is not used: it adds nothing to gathering by id",
                Feature.CHORD: "RQ's depends_on=[jobs] cannot hand the members' results to the callback"}),  # canvas (docs/canvas.md)
            Feature.RATE_LIMIT: emulated(
                "RQ 3's rq.RateLimit limits concurrency, not starts per period: the anytask worker class "
                "takes a slot of RedisRateLimiter (sliding window in Redis, cluster-wide, per task name) "
                "before running the job, else puts it back into RQ's ScheduledJobRegistry until the window "
                "has room (no slot is held while waiting; QUEUED meanwhile). RQ's scheduler re-queues it "
                "with 1 s resolution, so starts may come up to ~1 s later than the window allows"),
            Feature.UNIQUE: emulated(
                "RQ's enqueue(unique=True) only refuses a duplicate job id: the key is claimed with Redis "
                "SET NX EX (RedisStateStore.claim_unique) in RQ's Redis before the enqueue, for result_ttl "
                "(or 7 days) from the submit"),
            Feature.RESULT_TTL: native("RQ's result_ttl and failure_ttl per job (job hash and result stream "
                                       "expire that long after the end), whole seconds rounded up, at least 1; "
                                       "a cancelled job's hash gets the same EXPIRE"),
            Feature.PERIODIC: emulated(emulated_how(  # anytask/facade/beat.py, docs/periodic.md
                "claim_unique (Redis SET NX EX in RQ's Redis)",
                "Not rq.cron's CronScheduler (rq cron; interval and cron): every running CronScheduler fires on "
                "its own (run one per cluster), and CronJob.enqueue uses RQ's default pickle serializer and its own "
                "job ids, outside anytask's JSON submit. Opt-in 'anytask worker --beat native': RQ's CronScheduler "
                "in a child process (interval whole seconds; cron only with TZ=UTC, RQ uses local time), its "
                "CronJob.enqueue replaced by anytask's submit; run exactly one")),
        },
        needs_worker=True,
        delivery="at-most-once (a job whose worker dies mid-run is failed as abandoned about 90 s to 10 min "
                 "later, or retried if it has retries left; a job that kills its work horse is failed at once)",
        delivery_reliable="at-least-once for a dead worker (its abandoned jobs are requeued once their heartbeat "
                          "lapses, heartbeat_timeout default 90 s, bounded by the delivery guard); a job that "
                          "kills its work horse is still failed at once by RQ (at most once)",
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
        self.unique = RedisStateStore(self.redis, prefix=f"anytask:rq:{self.prefix}", url=url.raw)

    def queue_name(self, name: str, priority: int | None = None) -> str:
        """The RQ queue of a facade queue (and priority): ``prefix + name`` (``:pN`` for priority N > 0)."""
        return priority_queue(self.prefix + name, priority)

    def _queue(self, name: str, priority: int | None = None) -> Queue:
        rq_name = self.queue_name(name, priority)
        q = self._queues.get(rq_name)
        if q is None:
            q = self._queues[rq_name] = Queue(rq_name, connection=self.redis, serializer=JSONSerializer)
        return q

    # -- producer side ---------------------------------------------------------------------------
    def submit(self, task: Task[Any, Any], message: Message) -> None:
        o = task.options
        retry = None
        if o.retries:
            intervals = [o.retry_backoff * 2 ** i for i in range(o.retries)]
            retry = Retry(max=o.retries, interval=intervals if any(intervals) else 0)
        queue = self._queue(message.queue, o.priority)
        eta = message.options.get("eta")
        meta: dict[str, Any] = {}
        if o.retries:
            meta[META_RETRIES] = o.retries
        if o.rate_limit:
            meta[META_RATE] = {"rate": o.rate_limit, "key": self.prefix + task.name}
        ttl = self.record_ttl(o.result_ttl)
        with broker_errors(f"submitting {task.name}", self.url.raw):
            job = queue.create_job(
                task.name, args=list(message.args), kwargs=dict(message.kwargs), job_id=message.id,
                timeout=math.ceil(o.timeout) if o.timeout else -1, result_ttl=ttl, failure_ttl=ttl,
                meta=meta or None, retry=retry, status=JobStatus.SCHEDULED if eta is not None else JobStatus.QUEUED)
            job.created_at = datetime.fromtimestamp(message.enqueued_at, tz=UTC)
            with self.redis.pipeline() as pipe:  # one MULTI/EXEC: job hash + queue (or schedule) together
                if eta is not None:
                    # RQ stores and compares whole seconds, truncated: round up, never run early
                    queue.schedule_job(job, datetime.fromtimestamp(math.ceil(eta), tz=UTC), pipeline=pipe)
                else:
                    queue.enqueue_job(job, pipeline=pipe)
                pipe.execute()

    @staticmethod
    def record_ttl(result_ttl: float | None) -> int:
        """RQ's result_ttl/failure_ttl for a facade result_ttl: whole seconds, rounded up, at least 1
        (RQ gives 0 and -1 special meanings: delete at once, keep forever)."""
        return RESULT_TTL if result_ttl is None else max(1, math.ceil(result_ttl))

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
        if status is Status.SCHEDULED and META_DEFERRED in job.meta:
            status = Status.QUEUED  # put back by the worker until its rate limit has room: not a delay= ETA
        retries = int(job.meta.get(META_RETRIES, 0) or 0)
        left = job.retries_left if retries and job.retries_left is not None else retries
        if status in (Status.QUEUED, Status.SCHEDULED) and left < retries:
            status = Status.RETRYING  # RQ re-queued or re-scheduled the job after a failed attempt
        try:
            name: str | None = job.func_name
        except DeserializationError:
            name = None
        before_start = rq_status == "canceled" or job.meta.get(META_CANCEL) == "skipped"
        if status in (Status.QUEUED, Status.SCHEDULED):
            attempts = 0
        elif status is Status.RETRYING or before_start:
            attempts = retries - left
        else:
            attempts = retries - left + 1
        progress = job.meta.get(META_PROGRESS)
        fields: dict[str, Any] = {
            "id": task_id, "status": status, "task_name": name, "attempts": attempts,
            "progress": progress if isinstance(progress, dict) else None,
            "enqueued_at": _ts(job.created_at), "started_at": None if before_start else _ts(job.started_at),
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
        elif status in (Status.FAILED, Status.RETRYING):
            fields["error"] = self._error(job, latest, attempts)
        elif status is Status.CANCELLED:
            fields["note"] = ("cancelled before it started" if before_start
                              else "terminated while running by an RQ stop-job command")
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

    # -- cancel, unique keys -------------------------------------------------------------------
    CANCEL_WAIT = 5.0  # how long cancel() waits for a worker to confirm a stop (or to start a held job)

    def cancel(self, task_id: str) -> CancelResult:
        """Flag, then take the job out of RQ's queue / schedule; if a worker has it, stop it there.

        1. ``SET anytask:rq:cancel:<id>``: the worker wrapper reads it right before the task body, so
           from here on the task body never starts, whoever holds the job.
        2. ``LREM`` from its RQ queue + ``ZREM`` from its ScheduledJobRegistry in one MULTI: if either
           removed it, no worker has it: ``job.cancel()`` (RQ's canceled status and registry).
        3. Else a worker holds it: once it is ``started``, RQ's stop-job command kills the work horse
           (SimpleWorker: interrupts the body). Wait for the worker to end it (stopped / skipped / finished).
        """
        deadline = time.monotonic() + self.CANCEL_WAIT
        with broker_errors("cancelling a task", self.url.raw):
            try:
                job = Job.fetch(task_id, connection=self.redis, serializer=JSONSerializer)
            except NoSuchJobError:
                return CancelResult(task_id, CancelOutcome.ALREADY_FINISHED, Status.UNKNOWN, "expired meanwhile")
            ttl = job.result_ttl if job.result_ttl and job.result_ttl > 0 else RESULT_TTL
            self.redis.set(CANCEL_FLAG + task_id, "1", ex=max(ttl, 3600))
            stop_sent = False
            while True:
                if self._unqueue(job):
                    return self._cancel_waiting(job, ttl)
                res = self.get(task_id)
                if res.finished:
                    return self._cancel_outcome(res, stop_sent)
                if res.status is Status.RUNNING and not stop_sent:
                    try:
                        send_stop_job_command(self.redis, task_id, serializer=JSONSerializer)
                        stop_sent = True
                    except (InvalidJobOperation, NoSuchJobError):  # between dequeue and start: try again
                        pass
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.02)
            if stop_sent:
                return CancelResult(task_id, CancelOutcome.NOT_INTERRUPTIBLE, res.status,
                                    f"RQ stop-job command sent; the worker did not stop the job within "
                                    f"{self.CANCEL_WAIT:.0f}s (not an anytask worker class?): it may run to the end")
            # held by a worker that neither starts nor returns it (e.g. died after the pop): the flag
            # keeps any later run from starting the task body
            return self._cancel_waiting(job, ttl)

    def _unqueue(self, job: Job) -> bool:
        queue = Queue(job.origin, connection=self.redis, serializer=JSONSerializer)
        with self.redis.pipeline() as pipe:  # MULTI: the job is in at most one of them
            pipe.lrem(queue.key, 0, job.id)
            pipe.zrem(queue.scheduled_job_registry.key, job.id)
            removed_from_queue, removed_from_schedule = pipe.execute()
        return bool(removed_from_queue or removed_from_schedule)

    def _cancel_waiting(self, job: Job, ttl: int) -> CancelResult:
        try:
            job.cancel()
        except InvalidJobOperation:  # cancelled by someone else meanwhile
            pass
        self.redis.expire(job.key, ttl)  # RQ leaves a cancelled job's hash without expiry
        return CancelResult(job.id, CancelOutcome.CANCELLED_BEFORE_START, Status.CANCELLED,
                            "removed from RQ's queue/schedule (job.cancel()); it will never run")

    @staticmethod
    def _cancel_outcome(res: TaskResult, stop_sent: bool) -> CancelResult:
        if res.status is not Status.CANCELLED:  # it ended on its own before the stop reached it
            return CancelResult(res.id, CancelOutcome.ALREADY_FINISHED, res.status, "finished before the stop")
        if res.started_at is None:  # the worker had it but found the cancel flag before the task body
            return CancelResult(res.id, CancelOutcome.CANCELLED_BEFORE_START, res.status, res.note)
        return CancelResult(res.id, CancelOutcome.TERMINATED_WHILE_RUNNING, res.status, res.note)

    def claim_unique(self, key: str, task_id: str, ttl: float) -> str | None:
        return self.unique.claim_unique(key, task_id, ttl)

    def release_unique(self, key: str, task_id: str) -> None:
        self.unique.release_unique(key, task_id)

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
        """Drop the waiting jobs of ``queues`` (and of their priority queues): RQ's queue lists, scheduled
        and deferred registries, with the jobs' hashes. Records of finished, failed and cancelled jobs
        stay until their TTL (``client.get`` still answers for them)."""
        with broker_errors("purging", self.url.raw):
            for name in [priority_queue(q, p) for q in queues for p in (*PRIORITY_LEVELS, None)]:
                q = self._queue(name)
                q.empty()  # type: ignore[no-untyped-call]
                registries = [q.scheduled_job_registry, q.deferred_job_registry]
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
        queues = worker_queue_order([self.queue_name(q) for q in options.queues])
        if options.concurrency == 1:
            return ["worker", *common, "--with-scheduler", *options.extra, *queues]
        # rq worker-pool always starts its workers with the scheduler
        return ["worker-pool", *common, "--num-workers", str(options.concurrency), *options.extra, *queues]

    def native_beat(self, schedules: Sequence[Schedule]) -> Any:
        """``anytask worker --beat native``: RQ's own CronScheduler in a child process (anytask/adapters/rq_beat.py)."""
        from .rq_beat import RQNativeBeat

        return RQNativeBeat(self, schedules)

    def run_worker(self, tasks: Sequence[Task[Any, Any]], options: WorkerOptions) -> int:
        """Run ``rq worker`` / ``rq worker-pool`` (RQ's click CLI) in this process, where the task
        modules are imported, so every task resolves by name in the work horses (forked from here)."""
        serve_canvas(self.url.raw)  # canvas: continuations are submitted through this backend
        import click  # RQ's CLI is click-based
        from rq.cli.cli import main as rq_main  # importing rq.cli registers `worker` and `worker-pool`

        argv = self.worker_argv(options)
        if options.config == "reliable":  # Delivery and faults (issue 7), see ReliableWorker
            ReliableWorker.heartbeat_timeout = seconds_param(self.url, "heartbeat_timeout") or 90.0
            install_redis_guard(self.url, self.url.broker_url, f"rq:{self.prefix}", self.connect_timeout)
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

    # -- describe_worker (benchmark harness, issue 4) --
    def describe_worker(self, options: WorkerOptions) -> dict[str, Any]:
        n = options.concurrency
        cls = WORKER_CLASSES.get(options.config, "")
        kind = "fork per job" if options.config != "tuned" else "no fork (SimpleWorker)"
        return {"pool": f"rq {'worker' if n == 1 else 'worker-pool'} x{n}, {kind}", "processes": n, "threads": 1,
                "slots": n, "config": options.config, "knobs": {"worker_class": cls, "argv": ["rq", *self.worker_argv(options)]}}


__all__ = ["AnytaskJob", "AnytaskSimpleWorker", "AnytaskWorker", "CancelledBeforeStart", "RQAdapter", "ReliableWorker",
           "StopRequested", "WorkerFailure", "parse_exc_string", "priority_queue", "worker_queue_order"]
