"""``dramatiq+redis://`` and ``dramatiq+amqp://``: Dramatiq with its Redis or RabbitMQ broker.

URL forms::

    dramatiq+redis://[:password@]host:6379/db[?prefix=...&timeout=3]
    dramatiq+amqp://user:pass@host:5672/vhost[?result=redis://host:6379/db&prefix=...&timeout=3&confirm=1]

* Broker: ``RedisBroker`` on the URL's Redis, or ``RabbitmqBroker`` (pika) on the AMQP URL
  (an empty path, ``/`` or ``//`` is the default vhost ``/``).
* Results: Dramatiq's ``Results`` middleware with a ``RedisBackend``; on ``dramatiq+redis`` the
  broker's Redis, on ``dramatiq+amqp`` the Redis of ``result=`` (default ``redis://127.0.0.1:6379/0``).
* States: Dramatiq keeps none, so :class:`StateMiddleware` records them with Dramatiq's own
  middleware hooks into a :class:`RedisStateStore` next to the results (``anytask:dramatiq:state:<id>``).
* ``prefix`` is prepended to native queue names; ``timeout`` (seconds, default 3) bounds connecting;
  ``confirm=0`` turns off RabbitMQ publisher confirms on submit (default on).
* ``DramatiqAdapter(url)`` gives a ``DramatiqRedisAdapter`` or a ``DramatiqAmqpAdapter``: only their
  capabilities differ (message priority is RabbitMQ's x-max-priority; the Redis broker is FIFO).
* Cancel (before start), rate limits and unique keys are emulated on the state Redis; the worker's
  ``StateMiddleware`` skips cancelled messages and re-delays rate-limited ones (``SkipMessage``).

The worker is Dramatiq's own CLI, ``python -m dramatiq anytask.adapters.dramatiq:worker_broker``: the
``worker_broker`` callable builds the broker from environment variables set by :meth:`run_worker`.
See docs/adapters/dramatiq.md for the traps this module neutralises.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dramatiq
import redis
from dramatiq.common import xq_name
from dramatiq.encoder import JSONEncoder
from dramatiq.errors import ActorNotFound, BrokerConnectionError, DecodeError
from dramatiq.middleware import (
    AgeLimit,
    AsyncIO,
    Callbacks,
    CurrentMessage,
    Pipelines,
    Retries,
    ShutdownNotifications,
    SkipMessage,
    TimeLimit,
    TimeLimitExceeded,
)
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from ..facade import execution
from ..facade.adapter import Adapter, WorkerOptions
from ..facade.beat import emulated_how
from ..facade.schedule import Schedule, registered_schedules
from ..facade.capabilities import Capabilities, Feature, FeatureSupport, emulated, native, unsupported
from ..facade.continuation import emulated_canvas, serve_canvas
from ..facade.errors import (BrokerUnavailable, ConfigurationError, TaskNotRegistered, UnknownTaskId,
                              credentials_refused, refused_credentials)
from ..facade.records import CancelOutcome, CancelResult, ErrorInfo, Message, TaskResult
from ..facade.patience import WORKER_PATIENCE
from ..facade.state import DEFAULT_TTL, Recorder
from ..facade.status import Status
from ..facade.task import Task, get_task, parse_rate, registered_tasks
from ..facade.url import BackendURL, mask, parse_url
from ._delivery import max_deliveries, seconds_param
from ._redis_state import RedisRateLimiter, RedisStateStore, broker_errors, patient_redis
from ._redis_state import connect as redis_connect

logger = logging.getLogger("anytask.dramatiq")

DEFAULT_RESULT_URL = "redis://127.0.0.1:6379/0"
STATE_PREFIX = "anytask:dramatiq:state:"
RESULT_NAMESPACE = "dramatiq-results"
RESULT_TTL_MS = int(DEFAULT_TTL * 1000)  # Dramatiq's default is 10 minutes: align with the state records
NO_LIMIT_MS = 10 * 365 * 24 * 3600 * 1000  # "no time limit" in a JSON message (float('inf') is not JSON)
SCHEDULED_OPTION = "anytask_scheduled"  # message option: submitted with a delay (SCHEDULED until due)
RATE_OPTION = "anytask_rate_limit"  # message option: "N/s|m|h", enforced by StateMiddleware before start
UNIQUE_OPTION = "anytask_unique_key"  # message option: the unique key whose TTL follows the record's
RATE_PREFIX = "anytask:dramatiq:rate:"  # RedisRateLimiter windows, one sorted set per task name
MAX_PRIORITY = 9  # RabbitMQ x-max-priority of every queue: the facade's 0..9 maps 1:1 (higher first)

# Atomic state transitions in the state hash (fields hold JSON, so statuses compare as '"QUEUED"').
# start: RUNNING unless cancelled (ARGV: cancelled, running, started_at, attempts, ttl) -> 0 if CANCELLED,
# else the unfinished starts of the task, this one included: the delivery
# guard (issue 7) counts in the record's 'starts' field, which every in-process end resets to 0 in its
# own write (_END), so the guard costs no round trip of its own.
_START = """
if redis.call('hget', KEYS[1], 'status') == ARGV[1] then return 0 end
redis.call('hset', KEYS[1], 'status', ARGV[2], 'started_at', ARGV[3], 'attempts', ARGV[4])
redis.call('expire', KEYS[1], ARGV[5])
return redis.call('hincrby', KEYS[1], 'starts', 1)
"""
_END = {"starts": 0}  # extra fields of every in-process end write (success, failure, retry, time limit)
# cancel: CANCELLED if still waiting (ARGV: 3 waiting statuses, cancelled, finished_at, note, default ttl);
# returns the status found (nil: no record). The record then lives its own result_ttl (field result_ttl).
_CANCEL = """
local s = redis.call('hget', KEYS[1], 'status')
if not s then return false end
if s == ARGV[1] or s == ARGV[2] or s == ARGV[3] then
  redis.call('hset', KEYS[1], 'status', ARGV[4], 'finished_at', ARGV[5], 'note', ARGV[6])
  local ttl = tonumber(redis.call('hget', KEYS[1], 'result_ttl') or ARGV[7])
  redis.call('pexpire', KEYS[1], math.max(1, math.floor(ttl * 1000)))
end
return s
"""
# a due delayed message moved to its queue: SCHEDULED -> QUEUED, and nothing else (never over CANCELLED).
_QUEUE_IF_SCHEDULED = """
if redis.call('hget', KEYS[1], 'status') ~= ARGV[1] then return 0 end
redis.call('hset', KEYS[1], 'status', ARGV[2])
redis.call('expire', KEYS[1], ARGV[3])
return 1
"""
# the unique key lives as long as the record: its TTL follows the final write, if still bound to the id.
_EXPIRE_IF_OWNER = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"

_J = json.dumps
_WAITING = (Status.QUEUED, Status.SCHEDULED, Status.RETRYING)
CANCEL_NOTE = "cancelled before it started (the worker consumed the message and skipped it)"

# Environment of the worker process (set by run_worker, read by worker_broker).
ENV_URL = "ANYTASK_DRAMATIQ_URL"
ENV_MODULES = "ANYTASK_DRAMATIQ_MODULES"
ENV_TASKS = "ANYTASK_DRAMATIQ_TASKS"
ENV_QUEUES = "ANYTASK_DRAMATIQ_QUEUES"
ENV_CONFIG = "ANYTASK_DRAMATIQ_CONFIG"
ENV_BEAT = "ANYTASK_DRAMATIQ_BEAT"  # --beat: modules declaring the schedules, re-imported by the worker process

_CONFIGS = ("defaults", "tuned", "reliable")


# -- URL --------------------------------------------------------------------------------------------


def _amqp_url(broker_url: str) -> str:
    """The AMQP URL for pika: '', '/' and '//' mean the default vhost '/' (pika wants it as %2F)."""
    parts = urlsplit(broker_url)
    path = parts.path if parts.path not in ("", "/", "//") else "/%2F"
    return urlunsplit(("amqp", parts.netloc, path, "", ""))


def _pika_parameters(broker_url: str, timeout: float) -> Any:
    """pika parameters that give up within ``timeout``: one attempt, bounded socket and handshake."""
    import pika  # type: ignore[import-untyped]

    params = pika.URLParameters(_amqp_url(broker_url))
    params.connection_attempts = 1  # pika's default is 1, but make the bound explicit
    params.retry_delay = 0.1
    params.socket_timeout = timeout
    params.stack_timeout = timeout
    params.blocked_connection_timeout = max(timeout, 30.0)
    return params


def _producer_redis(url: str, timeout: float) -> redis.Redis:
    """A client whose every call gives up within ``timeout``: the producer's commands are all short
    (the shared ``_redis_state.connect`` waits at least 5 s for a reply, longer than the URL's timeout)."""
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                health_check_interval=30)


def _result_url(url: BackendURL) -> str:
    if url.transport == "redis":
        return url.broker_url
    return url.params.get("result") or DEFAULT_RESULT_URL


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.lower() not in ("0", "false", "no", "off")


def _ttl_ms(result_ttl: float | None) -> int:
    """A facade result_ttl (seconds, None = the default) in milliseconds >= 1 (Results' and PEXPIRE's unit)."""
    return max(1, int((DEFAULT_TTL if result_ttl is None else result_ttl) * 1000))


def _message_ttl(message: Any) -> float:
    """The final-write TTL (seconds) of a worker message: its ``result_ttl`` option (ms, as Results reads it)."""
    ms = message.options.get("result_ttl")
    return (ms if isinstance(ms, (int, float)) else _ttl_ms(None)) / 1000


# -- worker side: states, the actor wrapper --------------------------------------------------------


def error_info(exc: BaseException, message: Any = None) -> ErrorInfo:
    """The remote exception as strings, with its module path (Dramatiq's Results keep only the name)."""
    info = ErrorInfo.from_exception(exc)
    if isinstance(exc, TimeLimitExceeded) and not info.message:
        limit = (message.options.get("time_limit") if message is not None else None)
        what = f" of {limit / 1000:g}s" if isinstance(limit, (int, float)) else ""
        info = ErrorInfo(info.type, f"time limit{what} exceeded", info.traceback)
    return info


class StateMiddleware(dramatiq.Middleware):
    """Records QUEUED/RUNNING/RETRYING/SUCCEEDED/FAILED/CANCELLED with Dramatiq's middleware hooks, and
    decides before each start whether the message runs: not if it was cancelled (skipped), not yet if
    its task's rate limit is exhausted (re-enqueued with Dramatiq's delay, then skipped).

    It sits after ``Retries`` and before ``Results`` in the middleware list; ``after_*`` hooks run in
    reverse order, so ``Results`` has stored the value before SUCCEEDED is written, and RETRYING is
    written before ``Retries`` re-enqueues the message (no stale RETRYING over the next RUNNING).
    """

    def __init__(self, recorder: Recorder, retries: Retries, time_limit: TimeLimit,
                 limiter: RedisRateLimiter | None = None,
                 max_deliveries: int = execution.DEFAULT_MAX_DELIVERIES) -> None:
        self.recorder = recorder
        self.max_deliveries = max_deliveries
        self.retries = retries
        self.time_limit = time_limit
        self.store: RedisStateStore = recorder.store  # type: ignore[assignment]
        client = self.store.client
        self.limiter = limiter or RedisRateLimiter(client, RATE_PREFIX, self.store.url)
        self._start = client.register_script(_START)
        self._queue_if_scheduled = client.register_script(_QUEUE_IF_SCHEDULED)
        self._expire_if_owner = client.register_script(_EXPIRE_IF_OWNER)
        # Time-limit watchdog: thread id -> (deadline, message); ids reported FAILED at their deadline.
        self._deadlines: dict[int, tuple[float, Any, Any]] = {}
        self._timed_out: set[str] = set()
        self._lock = threading.Lock()
        self._watchdog: threading.Thread | None = None

    # -- writes -------------------------------------------------------------------------------
    def _finished(self, message: Any) -> None:
        """After a final write: the unique key (if any) expires with the record."""
        key = message.options.get(UNIQUE_OPTION)
        if key:
            with broker_errors("refreshing a unique key", self.store.url):
                self._expire_if_owner(keys=[f"{self.store.prefix}unique:{key}"],
                                      args=[message.message_id, max(1, int(_message_ttl(message) * 1000))])

    def _failed(self, message: Any, error: ErrorInfo, will_retry: bool) -> None:
        if will_retry:
            self.recorder.failed(message.message_id, error, will_retry=True, extra=_END)
        else:
            self.recorder.failed(message.message_id, error, will_retry=False, ttl=_message_ttl(message), extra=_END)
            self._finished(message)

    # -- hooks --------------------------------------------------------------------------------
    def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        # A delayed message whose eta passed is moved by the worker from <queue>.DQ to <queue>:
        # SCHEDULED -> QUEUED (only from SCHEDULED: a cancelled one stays CANCELLED; retries and
        # rate-limited re-enqueues keep RETRYING/QUEUED until RUNNING).
        if delay is None and message.options.get(SCHEDULED_OPTION) and not message.options.get("retries"):
            with broker_errors("writing task state", self.store.url):
                self._queue_if_scheduled(keys=[self.store.key(message.message_id)],
                                         args=[_J(Status.SCHEDULED.value), _J(Status.QUEUED.value),
                                               int(self.recorder.ttl or DEFAULT_TTL)])

    def _skip(self, message: Any, why: str) -> None:
        message._anytask_skip = why  # read by after_skip_message (MessageProxy takes attributes)
        raise SkipMessage(why)

    def before_process_message(self, broker: Any, message: Any) -> None:
        task_id = message.message_id
        rate = message.options.get(RATE_OPTION)
        if rate:
            if (self.store.read(task_id) or {}).get("status") == Status.CANCELLED.value:
                self._skip(message, "cancelled")  # do not spend a rate-limit slot on it
            count, period = parse_rate(rate)
            wait = self.limiter.acquire(message.actor_name, count, period, f"{task_id}:{uuid.uuid4().hex}")
            if wait > 0:
                # Over the limit: back to the delay queue until a slot frees (plus up to one slot's
                # spacing of jitter, so the waiting messages do not all come back at once).
                delay = math.ceil((wait + random.uniform(0, period / count)) * 1000)
                broker.enqueue(message, delay=delay)  # as Retries does: a copy of the message, to <queue>.DQ
                self._skip(message, "rate_limited")
        with broker_errors("writing task state", self.store.url):
            started = self._start(keys=[self.store.key(task_id)],
                                  args=[_J(Status.CANCELLED.value), _J(Status.RUNNING.value), _J(time.time()),
                                        _J(message.options.get("retries", 0) + 1),
                                        int(self.recorder.ttl or DEFAULT_TTL)])
        if not started:
            self._skip(message, "cancelled")
        if started > self.max_deliveries:  # poison: its worker died every time it ran it
            died = execution.WorkerDied(
                f"worker died {started - 1} times while running this task (task {task_id}, {message.actor_name}); "
                f"not run again: max_deliveries={self.max_deliveries}")
            # FAILED, keeping the count (a stray redelivery is refused again)
            self.recorder.failed(task_id, ErrorInfo.from_exception(died), will_retry=False, ttl=_message_ttl(message))
            self._finished(message)
            self._skip(message, "poison")
        limit = message.options.get("time_limit") or broker.get_actor(message.actor_name).options.get(
            "time_limit", self.time_limit.time_limit)  # the same lookup as Dramatiq's TimeLimit
        if isinstance(limit, (int, float)) and math.isfinite(limit) and limit < NO_LIMIT_MS:
            with self._lock:
                self._deadlines[threading.get_ident()] = (time.monotonic() + limit / 1000, broker, message)
                if self._watchdog is None:
                    self._watchdog = threading.Thread(target=self._watch, name="anytask-time-limits", daemon=True)
                    self._watchdog.start()

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        timed_out = self._done(message)
        if exception is None and not timed_out:
            self.recorder.succeeded(message.message_id, None, store_value=False,  # the value is in Results
                                    ttl=_message_ttl(message), extra=_END)
            self._finished(message)
        elif exception is None:
            # Returned after its deadline, before TimeLimit's exception landed: still a timeout, and
            # Retries (which saw no exception) will not retry it.
            self._failed(message, error_info(TimeLimitExceeded(), message), will_retry=False)
        else:
            self._failed(message, error_info(exception, message),
                         will_retry=self.will_retry(broker, message, exception))

    def _done(self, message: Any) -> bool:
        with self._lock:
            self._deadlines.pop(threading.get_ident(), None)
            if message.message_id in self._timed_out:
                self._timed_out.discard(message.message_id)
                return True
        return False

    def _watch(self) -> None:
        """Dramatiq's TimeLimit raises TimeLimitExceeded in the worker thread, but only when that thread
        runs Python bytecode again: a blocking call (time.sleep, a socket read) runs to its end first.
        So the task is reported at its deadline here; the thread is freed when the call returns."""
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            with self._lock:
                expired = [(tid, b, m) for tid, (d, b, m) in self._deadlines.items() if d <= now]
                for tid, _, m in expired:
                    del self._deadlines[tid]
                    self._timed_out.add(m.message_id)
            for _, broker, message in expired:
                exc = TimeLimitExceeded()
                try:
                    self._failed(message, error_info(exc, message), will_retry=self.will_retry(broker, message, exc))
                except Exception:
                    logger.warning("could not record the time-out of %s", message.message_id, exc_info=True)

    def after_skip_message(self, broker: Any, message: Any) -> None:
        self._done(message)
        why = getattr(message, "_anytask_skip", None)
        if why == "cancelled":
            self._finished(message)  # the record is CANCELLED already (by cancel())
            return
        if why in ("rate_limited", "poison"):
            return  # re-enqueued with a delay: still QUEUED (or RETRYING); poison: FAILED already
        exc = getattr(message, "_exception", None)
        if message.failed:
            err = error_info(exc, message) if exc is not None else ErrorInfo(
                "dramatiq.middleware.SkipMessage", "skipped and failed by a dramatiq middleware")
            self._failed(message, err, will_retry=False)
        else:
            self.recorder.cancelled(message.message_id, "skipped by a dramatiq middleware", ttl=_message_ttl(message))
            self._finished(message)

    def after_nack(self, broker: Any, message: Any) -> None:
        # Dead-lettered without running (the worker does not know the actor): FAILED, not QUEUED forever.
        exc = getattr(message, "_exception", None)
        if isinstance(exc, ActorNotFound):
            err = ErrorInfo.from_exception(exc)
            err = ErrorInfo("anytask.facade.errors.TaskNotRegistered",  # one error type on every backend
                            f"task {message.actor_name!r} is not registered in the Dramatiq worker (no actor of "
                            "that name; the message is dead-lettered); start it with --tasks naming the module "
                            "that defines it (Dramatiq: ActorNotFound)", err.traceback)
            self._failed(message, err, will_retry=False)

    def will_retry(self, broker: Any, message: Any, exc: BaseException) -> bool:
        """Whether ``Retries.after_process_message`` (which runs next) re-enqueues the message."""
        try:
            actor = broker.get_actor(message.actor_name)
        except ActorNotFound:
            return False
        throws = message.options.get("throws") or actor.options.get("throws")
        if throws and isinstance(exc, throws):
            return False
        retries = message.options.get("retries", 0)
        retry_when = actor.options.get("retry_when", self.retries.retry_when)
        if retry_when is not None:
            return bool(retry_when(retries, exc))
        max_retries = message.options.get("max_retries", actor.options.get("max_retries", self.retries.max_retries))
        return max_retries is None or retries < max_retries


def _actor_function(task: Task[Any, Any], recorder: Recorder | None = None) -> Any:
    """The native function: set the TaskContext, run the task through execution.call/acall.

    ``anytask.progress()`` inside the task writes the ``progress`` field of the task's state record
    through ``recorder`` (one HSET; ``get()`` returns it as ``TaskResult.progress``).

    For an ``async def`` task it is itself ``async def``: Dramatiq then runs it natively on the event
    loop thread of its AsyncIO middleware (the current message's contextvar is carried over)."""

    def context() -> execution.TaskContext:
        msg = CurrentMessage.get_current_message()
        if msg is None:  # pragma: no cover - the worker broker always has CurrentMessage
            return execution.TaskContext("", task.name)
        task_id = msg.message_id
        report = None if recorder is None else (lambda p: recorder.progress(task_id, p))
        return execution.TaskContext(task_id, task.name, msg.options.get("retries", 0) + 1, report)

    run: Any
    if task.is_async:
        async def run(*args: Any, **kwargs: Any) -> Any:
            with execution.task_context(context()):
                return await execution.acall(task, args, kwargs)
    else:
        def run(*args: Any, **kwargs: Any) -> Any:
            with execution.task_context(context()):
                return execution.call(task, args, kwargs)

    run.__name__ = task.func.__name__
    run.__qualname__ = task.func.__qualname__
    run.__module__ = task.func.__module__
    run.__doc__ = task.func.__doc__
    return run


# -- the adapter ------------------------------------------------------------------------------------


PRIORITY_AMQP = native(
    f"RabbitMQ queue priority: every queue (and its .DQ) is declared with x-max-priority={MAX_PRIORITY} "
    "(RabbitmqBroker(max_priority=9)) and each message is published with broker_priority=priority (0..9, "
    "higher first, the same direction as the facade; no priority = 0). Waiting messages are delivered "
    "highest first; up to prefetch (2 x threads; 1 with --config reliable) messages already delivered to a "
    "worker run in arrival order")
PRIORITY_REDIS = unsupported(
    "Dramatiq's Redis broker keeps one FIFO list per queue (dispatch.lua: RPUSH/LPOP) and has no message "
    "priority; the actor priority option only orders the few messages one worker has prefetched, and a "
    "worker consumes several queues at once (no queue-order emulation). Use dramatiq+amqp "
    "(RabbitMQ x-max-priority)")
PRIORITY_BY_BROKER = unsupported(
    "depends on the broker: dramatiq+amqp native (RabbitMQ x-max-priority=9, broker_priority per "
    "message), dramatiq+redis unsupported (the Redis broker is FIFO); declared by DramatiqAmqpAdapter / "
    "DramatiqRedisAdapter, the classes the adapter instantiates for each URL")


def _capabilities(priority: FeatureSupport) -> Capabilities:
    return Capabilities(
        features={
            Feature.RETRIES: native("Retries middleware: max_retries=retries and min_backoff=retry_backoff "
                                    "(ms) on each message; Dramatiq's default of 20 retries is neutralised to 0; "
                                    "backoff is retry_backoff*2^n with Dramatiq's x1-2 jitter"),
            Feature.TIMEOUT: native("TimeLimit middleware: time_limit=timeout (ms) on each message, "
                                    "TimeLimitExceeded raised in the worker thread; Dramatiq's default "
                                    "10-minute limit is neutralised to none"),
            Feature.QUEUES: native("actor/message queue_name = prefix+queue; the worker consumes "
                                   "--queues (and their .DQ delay queues)"),
            Feature.ASYNC_TASKS: native("declared as async def actors: Dramatiq's AsyncIO middleware runs "
                                        "them on its event loop thread"),
            Feature.DELAY: native("broker.enqueue(message, delay=ms): the message waits in the <queue>.DQ "
                                  "delay queue; the worker's consumer re-enqueues it at its eta"),
            Feature.PRIORITY: priority,
            Feature.CANCEL: emulated(
                "Dramatiq has no cancel (dramatiq-abort is a separate package): cancel() atomically sets the "
                "state record of a QUEUED/SCHEDULED/RETRYING task to CANCELLED (Lua on Redis); the worker's "
                "middleware moves a record to RUNNING only if it is not CANCELLED, and otherwise raises "
                "SkipMessage, so the message is consumed, acked and never run. A RUNNING task is "
                "NOT_INTERRUPTIBLE: it finishes (Dramatiq can only raise an exception asynchronously in the "
                "thread, as TimeLimit does: it does not stop a blocking call and the task can catch it)"),
            Feature.PROGRESS: emulated("Dramatiq keeps no progress: anytask.progress() writes a 'progress' "
                                       "field into anytask's state record in Redis (one HSET per call)"),
            **emulated_canvas({
                Feature.CHAIN: "dramatiq.pipeline is not used: it appends the previous result as the last "
                               "argument (anytask passes it first, as Celery does) and its Pipelines middleware "
                               "sends the next message outside anytask's state records",
                Feature.GROUP: "dramatiq.group is a client-side gather too",
                Feature.CHORD: "dramatiq.group(...).add_completion_callback needs the GroupCallbacks middleware "
                               "and a rate-limiter backend; not used, for the chain's reason"}),  # canvas (docs/canvas.md)
            Feature.RATE_LIMIT: emulated(
                "cluster-wide sliding window per task name (anytask's RedisRateLimiter, a Lua sorted set in "
                "the result Redis), taken by the worker's middleware before each start; over the limit the "
                "message goes back to Dramatiq's delay queue until a slot frees (SkipMessage; no worker "
                "slot is held). Not dramatiq.rate_limits: its limiters are acquire-or-fail (the documented "
                "pattern raises RateLimitExceeded into Retries, spending retries with exponential backoff), "
                "WindowRateLimiter costs one key per second of window per acquire, BucketRateLimiter is a "
                "fixed window (2N bursts)"),
            Feature.UNIQUE: emulated("Dramatiq has no deduplication: claim_unique is SET NX on the state "
                                     "Redis (RedisStateStore); the key lives as long as the task's record "
                                     "(refreshed to result_ttl by the final write)"),
            Feature.RESULT_TTL: native("Dramatiq's Results result_ttl (ms) on each message; anytask's state "
                                       "record (and unique key) gets the same PEXPIRE on its final write"),
            Feature.PERIODIC: emulated(emulated_how(  # anytask/facade/beat.py, docs/periodic.md
                "claim_unique (SET NX on the state Redis)",
                "Dramatiq has no scheduler (periodiq / APScheduler are separate packages; '--beat native' is "
                "refused). anytask worker execs Dramatiq's CLI, so --beat runs the beat in the Dramatiq worker "
                "process")),
        },
        needs_worker=True,
        delivery="at-least-once (Dramatiq acks after the actor returns; RabbitMQ redelivers a dead worker's "
                 "messages at once; on Redis they come back when maintenance, run on 0.1 % of broker commands, "
                 "finds the worker's heartbeat older than heartbeat_timeout (60 s): often many minutes later; "
                 "the Dramatiq main process exits when one of its worker processes dies)",
        delivery_reliable="at-least-once (prefetch 1; on Redis maintenance on 25 % of broker commands; anytask "
                          "worker restarts Dramatiq when it exits; the delivery guard fails a task whose worker "
                          "died max_deliveries times)",
        brokers=("redis", "rabbitmq"),
    )


class DramatiqAdapter(Adapter):
    """Dramatiq on Redis or RabbitMQ. Instantiating it gives a :class:`DramatiqRedisAdapter` or a
    :class:`DramatiqAmqpAdapter`: their capabilities differ (priority exists on RabbitMQ only)."""

    capabilities = _capabilities(PRIORITY_BY_BROKER)

    def __new__(cls, url: BackendURL) -> DramatiqAdapter:  # noqa: PYI034 - returns the per-broker subclass
        chosen: type[DramatiqAdapter] = cls
        if cls is DramatiqAdapter:
            chosen = {"redis": DramatiqRedisAdapter, "amqp": DramatiqAmqpAdapter}.get(url.transport, cls)
        return super().__new__(chosen)

    def __init__(self, url: BackendURL) -> None:
        super().__init__(url)
        if url.transport not in ("redis", "amqp"):
            raise ConfigurationError(f"dramatiq supports redis and amqp brokers, not {url.transport!r} "
                                     f"({url.masked}); e.g. dramatiq+redis://127.0.0.1:6379/0")
        self.prefix = url.params.get("prefix", "")
        self.result_url = _result_url(url)
        self.confirm = _flag(url.params.get("confirm"), True)
        self.redis = _producer_redis(self.result_url, self.connect_timeout)
        self.store = RedisStateStore(self.redis, STATE_PREFIX, self.result_url)
        self.recorder = Recorder(self.store)
        self.results = RedisBackend(client=self.redis, namespace=RESULT_NAMESPACE, encoder=JSONEncoder(),
                                    use_namespace_prefix_keys=True)
        self._cancel = self.redis.register_script(_CANCEL)
        self._broker: Any = None

    # -- brokers -------------------------------------------------------------------------------
    def native_queue(self, queue: str) -> str:
        return self.prefix + queue

    def _producer_broker(self) -> Any:
        """A broker without middleware, for enqueueing only (built lazily: no I/O until used)."""
        if self._broker is None:
            if self.url.transport == "redis":
                from dramatiq.brokers.redis import RedisBroker

                client = _producer_redis(self.url.broker_url, self.connect_timeout)
                self._broker = RedisBroker(client=client, middleware=[])  # type: ignore[no-untyped-call]
            else:
                from dramatiq.brokers.rabbitmq import RabbitmqBroker

                self._broker = RabbitmqBroker(parameters=None, middleware=[], confirm_delivery=self.confirm,
                                              max_priority=MAX_PRIORITY)  # must match the worker's declaration
                self._broker.parameters = _pika_parameters(self.url.broker_url, self.connect_timeout)
        return self._broker

    def worker_broker(self, config: str = "defaults") -> Any:
        """The worker's broker: Dramatiq's default middleware with the traps neutralised, plus
        CurrentMessage, AsyncIO, the state recorder and Results (stored for a week, not 10 minutes).
        The recorder is kept as ``broker.anytask_recorder`` for the actors' progress reports."""
        retries = Retries(max_retries=0)  # Dramatiq's default is 20; each message carries its own
        time_limit = TimeLimit(time_limit=float("inf"))  # Dramatiq's default is 600000 ms (10 minutes)
        store = RedisStateStore(redis_connect(self.result_url, self.connect_timeout), STATE_PREFIX, self.result_url)
        # A task ending while Redis restarts still gets its state and result: the worker's writes wait
        # out the outage (anytask's patience for the record, redis-py's own Retry for Dramatiq's Results).
        backend = RedisBackend(client=patient_redis(self.result_url, self.connect_timeout), namespace=RESULT_NAMESPACE,
                               encoder=JSONEncoder(), use_namespace_prefix_keys=True)
        middleware = [
            AgeLimit(),
            time_limit,
            ShutdownNotifications(),
            Callbacks(),
            Pipelines(),
            retries,
            CurrentMessage(),
            AsyncIO(),
            StateMiddleware(recorder := Recorder(store, patience=WORKER_PATIENCE), retries, time_limit,
                            max_deliveries=max_deliveries(self.url)),
            Results(backend=backend, store_results=True, result_ttl=RESULT_TTL_MS),  # type: ignore[no-untyped-call]
        ]
        broker: Any
        if self.url.transport == "redis":
            from dramatiq.brokers.redis import RedisBroker

            broker = RedisBroker(url=self.url.broker_url, middleware=middleware,  # type: ignore[no-untyped-call]
                                 **self._redelivery_options(config))
            broker.consume = _refusing_undecodable(broker)  # security: see _refusing_undecodable
        else:
            from dramatiq.brokers.rabbitmq import RabbitmqBroker

            broker = RabbitmqBroker(parameters=None, middleware=middleware, confirm_delivery=(config == "reliable"),
                                    max_priority=MAX_PRIORITY)
            broker.parameters = _pika_parameters(self.url.broker_url, max(self.connect_timeout, 10.0))
        broker.anytask_recorder = recorder
        return broker

    def _redelivery_options(self, config: str) -> dict[str, Any]:
        """Delivery and faults (issue 7): the unacked messages of a dead worker go back to their queue when
        maintenance (a random ``maintenance_chance`` per million broker commands, Dramatiq: 1000) finds its
        heartbeat older than ``heartbeat_timeout`` (URL param, seconds; Dramatiq: 60). ``reliable`` runs
        maintenance on a quarter of the commands so that this happens within seconds, not tens of minutes."""
        opts: dict[str, Any] = {"maintenance_chance": 250_000} if config == "reliable" else {}
        seconds = seconds_param(self.url, "heartbeat_timeout")
        if seconds is not None:
            opts["heartbeat_timeout"] = int(seconds * 1000)
        return opts

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Connection errors of the broker (redis-py, pika, Dramatiq) -> BrokerUnavailable."""
        with broker_errors(what, self.url.raw):
            try:
                yield
            except BrokerConnectionError as exc:
                if "PRECONDITION_FAILED" in str(exc) and "x-max-priority" in str(exc):
                    raise ConfigurationError(
                        f"{what}: a queue on {self.url.masked} was declared without x-max-priority={MAX_PRIORITY} "
                        f"(by an older anytask or another program); RabbitMQ cannot change a queue's arguments: "
                        f"delete the queue and its .DQ once (rabbitmqctl delete_queue NAME) and they are "
                        f"redeclared with priority ({mask(str(exc))})") from None
                if refused_credentials(exc):
                    raise credentials_refused(what, "the broker", self.url.masked, mask(str(exc))) from None
                raise BrokerUnavailable(f"{what}: the broker at {self.url.masked} did not answer "
                                        f"({mask(str(exc)) or type(exc).__name__})") from None
            except Exception as exc:
                if type(exc).__module__.startswith("pika"):
                    if refused_credentials(exc):
                        raise credentials_refused(what, "RabbitMQ", self.url.masked,
                                                  f"{type(exc).__name__}: {mask(str(exc))}") from None
                    raise BrokerUnavailable(f"{what}: RabbitMQ at {self.url.masked} did not answer "
                                            f"({type(exc).__name__}: {mask(str(exc))}); is it running? "
                                            "Check the URL or start one with 'anytask brokers up'") from None
                raise

    def _amqp_connect(self, broker: Any) -> None:
        """Open this thread's pika connection now, so that a dead broker fails once, within the timeout
        (Dramatiq's enqueue would otherwise retry the connection up to 6 times)."""
        conn = broker.connection
        if not conn.is_open:  # closed by the server (e.g. heartbeat): let Dramatiq open a new one
            del broker.connection
            broker.connection  # noqa: B018

    # -- producer side -------------------------------------------------------------------------
    def submit(self, task: Task[Any, Any], message: Message) -> None:
        o = task.options
        queue = self.native_queue(message.queue)
        eta = message.options.get("eta")
        delay = None if eta is None else max(0, round((eta - time.time()) * 1000))
        options: dict[str, Any] = {
            "max_retries": o.retries,  # per message: overrides the actor's (and Dramatiq's default 20)
            "min_backoff": round(o.retry_backoff * 1000),
        }
        if o.timeout is not None:
            options["time_limit"] = math.ceil(o.timeout * 1000)
        elif self._declared_timeout(task):
            options["time_limit"] = NO_LIMIT_MS  # .using(timeout=None) on a task declared with a timeout
        if eta is not None:
            options[SCHEDULED_OPTION] = True
        if o.priority is not None:
            options["broker_priority"] = o.priority  # RabbitMQ only (the client refuses it on Redis)
        if o.rate_limit is not None:
            options[RATE_OPTION] = o.rate_limit
        if o.unique_key is not None:
            options[UNIQUE_OPTION] = o.unique_key
        if o.result_ttl is not None:
            options["result_ttl"] = _ttl_ms(o.result_ttl)  # Results' own option (ms); the state record follows it
        msg: dramatiq.Message[Any] = dramatiq.Message(queue_name=queue, actor_name=task.name, args=tuple(message.args),
                               kwargs=dict(message.kwargs), options=options, message_id=message.id,
                               message_timestamp=int(message.enqueued_at * 1000))
        # Record before enqueueing (a fast worker must find the record); the queue name is needed to
        # rebuild the Results key from the id alone.
        extra: dict[str, Any] = {"dramatiq_queue": queue, "result_ttl": _ttl_ms(o.result_ttl) / 1000}
        if o.unique_key is not None:
            extra["unique_key"] = o.unique_key
        self.recorder.submitted(message.id, task.name, scheduled=eta is not None,
                                enqueued_at=message.enqueued_at, extra=extra)
        try:
            broker = self._producer_broker()
            with self._errors(f"enqueueing {task.name}"):
                if self.url.transport == "amqp":
                    self._amqp_connect(broker)
                broker.enqueue(msg, delay=delay)
        except BaseException:
            try:
                self.store.delete(message.id)
            except BrokerUnavailable:
                pass
            raise

    @staticmethod
    def _declared_timeout(task: Task[Any, Any]) -> bool:
        try:
            return get_task(task.name).options.timeout is not None
        except TaskNotRegistered:
            return False

    def cancel(self, task_id: str) -> CancelResult:
        """CANCELLED if still waiting (atomically; the worker then skips the message), else say why not."""
        with broker_errors("cancelling a task", self.result_url):
            found = self._cancel(keys=[self.store.key(task_id)],
                                 args=[*(_J(s.value) for s in _WAITING), _J(Status.CANCELLED.value),
                                       _J(time.time()), _J(CANCEL_NOTE), DEFAULT_TTL])
        if found is None:
            raise UnknownTaskId(f"no task with id {task_id!r} on {self.url.masked} (never submitted, or expired)")
        status = Status(json.loads(found))
        if status in _WAITING:
            rec = self.store.read(task_id) or {}
            key = rec.get("unique_key")
            if key:
                with broker_errors("refreshing a unique key", self.result_url):
                    self.redis.eval(_EXPIRE_IF_OWNER, 1, f"{self.store.prefix}unique:{key}", task_id,
                                    _ttl_ms(rec.get("result_ttl")))
            return CancelResult(task_id, CancelOutcome.CANCELLED_BEFORE_START, Status.CANCELLED, CANCEL_NOTE)
        if status.finished:
            return CancelResult(task_id, CancelOutcome.ALREADY_FINISHED, status)
        return CancelResult(task_id, CancelOutcome.NOT_INTERRUPTIBLE, status,
                            "Dramatiq cannot stop a running actor: it runs to its end")

    def claim_unique(self, key: str, task_id: str, ttl: float) -> str | None:
        """SET NX EX on the state Redis; ``ttl`` (from the client) covers the wait and the run, and the
        final write (or cancel) shortens it to the record's result_ttl."""
        return self.store.claim_unique(key, task_id, ttl)

    def release_unique(self, key: str, task_id: str) -> None:
        self.store.release_unique(key, task_id)

    def get(self, task_id: str) -> TaskResult:
        rec = self.store.read(task_id)
        if not rec:
            return TaskResult.unknown(task_id)
        res = TaskResult.from_dict({**rec, "id": task_id})
        if res.status is Status.SUCCEEDED and not res.has_value:
            found, value = self._stored_result(task_id, rec)
            if found:
                res = res.replace(value=value, has_value=True)
            else:
                res = res.replace(note="the result is no longer in Dramatiq's result backend (expired?)")
        elif res.status is Status.FAILED and res.error is None:
            found, value = self._stored_result(task_id, rec)
            exn = value.get("exn") if found and isinstance(value, dict) else None
            if isinstance(exn, dict):  # Dramatiq's own exception record: class name and message only
                res = res.replace(error=ErrorInfo(str(exn.get("type", "")), str(exn.get("msg", ""))))
        return res

    def _stored_result(self, task_id: str, rec: dict[str, Any]) -> tuple[bool, Any]:
        """Peek at the Results backend (LINDEX: never consumes), rebuilding its key from the record."""
        msg: dramatiq.Message[Any] = dramatiq.Message(queue_name=rec.get("dramatiq_queue") or self.native_queue("default"),
                               actor_name=rec.get("task_name") or "", args=(), kwargs={}, options={},
                               message_id=task_id)
        key = self.results.build_message_key(msg)
        with broker_errors("reading the task result", self.result_url):
            data = self.redis.lindex(key, 0)
        if data is None:
            return False, None
        return True, self.results.encoder.decode(data)

    def ping(self) -> None:
        with broker_errors("pinging the result store", self.result_url):
            self.redis.ping()
        if self.url.transport == "redis":
            with broker_errors("pinging the broker", self.url.raw):
                self._producer_broker().client.ping()
        else:
            import pika

            with self._errors("pinging RabbitMQ"):
                pika.BlockingConnection(_pika_parameters(self.url.broker_url, self.connect_timeout)).close()

    def purge(self, queues: Sequence[str] = ("default",)) -> None:
        broker = self._producer_broker()
        with self._errors("purging queues"):
            for q in queues:
                broker.flush(self.native_queue(q))  # the queue and its .DQ (RabbitMQ: and .XQ)
                if self.url.transport == "redis":
                    broker.do_purge(xq_name(self.native_queue(q)))  # Redis keeps dead letters in .XQ
        with broker_errors("purging results", self.result_url):
            for q in queues:
                for key in self.redis.scan_iter(match=f"{RESULT_NAMESPACE}:{self.native_queue(q)}:*", count=1000):
                    self.redis.delete(key)
            for key in self.redis.scan_iter(match=RATE_PREFIX + "*", count=1000):
                self.redis.delete(key)
        self._purge_records([self.native_queue(q) for q in queues])

    def _purge_records(self, native_queues: Sequence[str]) -> None:
        """Delete the state records of the tasks whose messages a purge drops: QUEUED, SCHEDULED or
        RETRYING on ``native_queues`` (else they would stay waiting forever); then the unique keys whose
        task record is gone. Running and finished tasks keep their records until their TTL."""
        queues = {_J(q).encode() for q in native_queues}
        waiting = {_J(s.value).encode() for s in _WAITING}
        unique_prefix = f"{self.store.prefix}unique:".encode()
        with broker_errors("purging task states", self.result_url):
            uniques = []
            for key in self.redis.scan_iter(match=self.store.prefix + "*", count=1000):
                if key.startswith(unique_prefix):
                    uniques.append(key)
                    continue
                queue, status = self.redis.hmget(key, ["dramatiq_queue", "status"])
                if queue in queues and status in waiting:
                    self.redis.delete(key)
            for key in uniques:
                bound = self.redis.get(key)
                bound_id = bound.decode() if isinstance(bound, bytes) else bound
                if bound_id is None or not self.redis.exists(self.store.key(bound_id)):
                    self.redis.delete(key)

    def close(self) -> None:
        if self._broker is not None:
            self._broker.close()
            if self.url.transport == "redis":
                self._broker.client.close()
            self._broker = None
        self.redis.close()

    # -- worker side ---------------------------------------------------------------------------
    def start_beat(self, schedules: Sequence[Schedule]) -> None:
        """run_worker execs Dramatiq's CLI, which would end a thread started here: the beat starts in
        the Dramatiq worker process instead (worker_broker, ENV_BEAT)."""
        self._beat_modules = sorted({s.module for s in schedules if s.module})
        return None

    def native_beat(self, schedules: Sequence[Schedule]) -> Any:
        """``anytask worker --beat native``: Dramatiq has no scheduler of its own."""
        from ._native_beat import refuse

        raise refuse(self.name, None, "Dramatiq has no scheduler of its own (periodic tasks need a separate "
                     "package: periodiq, or APScheduler)")

    def run_worker(self, tasks: Sequence[Task[Any, Any]], options: WorkerOptions) -> int:
        """Replace this process by Dramatiq's CLI (signals and exit code are Dramatiq's own); with config
        ``reliable``, supervise it instead (restart it when it exits without being asked to).

        ``python -m dramatiq anytask.adapters.dramatiq:worker_broker --processes 1 --threads N --queues Q..``
        """
        serve_canvas(self.url.raw)  # canvas: continuations are submitted through this backend
        if options.config not in _CONFIGS:
            raise ConfigurationError(f"unknown worker config {options.config!r}; valid: {', '.join(_CONFIGS)}")
        if options.concurrency < 1:
            raise ConfigurationError("concurrency must be >= 1")
        argv, env = self.worker_command(tasks, options)
        sys.stdout.flush()
        sys.stderr.flush()
        if options.config == "reliable":  # Delivery and faults (issue 7): Dramatiq's main process exits for
            from ._supervise import supervise  # good when one worker process dies; start it again

            return supervise(argv, env, name="dramatiq")
        os.execve(sys.executable, argv, env)
        return 1  # pragma: no cover - execve does not return

    def worker_command(self, tasks: Sequence[Task[Any, Any]], options: WorkerOptions) -> tuple[list[str], dict[str, str]]:
        """The Dramatiq CLI command line and environment for ``options`` (see docs/adapters/dramatiq.md)."""
        env = dict(os.environ)
        env[ENV_URL] = self.url.raw
        env[ENV_MODULES] = ",".join(sorted({t.func.__module__ for t in tasks}))
        env[ENV_TASKS] = ",".join(t.name for t in tasks)
        env[ENV_QUEUES] = ",".join(options.queues)
        env[ENV_CONFIG] = options.config
        if options.beat:
            env[ENV_BEAT] = ",".join(getattr(self, "_beat_modules", None) or sorted({t.func.__module__ for t in tasks}))
        if options.config == "tuned":
            env.setdefault("dramatiq_worker_timeout", "100")  # idle poll/wakeup: 1000 ms by default
            env.setdefault("dramatiq_queue_prefetch", str(4 * options.concurrency))  # default 2 x threads
        elif options.config == "reliable":
            env.setdefault("dramatiq_queue_prefetch", "1")  # hold at most one unacked message
        argv = [sys.executable, "-m", "dramatiq", "anytask.adapters.dramatiq:worker_broker",
                "--processes", "1", "--threads", str(options.concurrency),
                *options.extra,
                "--queues", *[self.native_queue(q) for q in options.queues]]
        return argv, env

    # -- describe_worker (benchmark harness, issue 4) --
    def describe_worker(self, options: WorkerOptions) -> dict[str, Any]:
        n = options.concurrency
        argv, env = self.worker_command([], options)
        return {"pool": f"1 process x {n} threads", "processes": 1, "threads": n, "slots": n, "config": options.config,
                "knobs": {"argv": ["dramatiq", *argv[3:]],
                          "env": {k: v for k, v in env.items() if k.startswith("dramatiq_")}}}


# -- security (issue 7): a message that is not JSON -------------------------------------------------


class _RefusingConsumer:
    """Dramatiq's Redis consumer, except that a message that does not decode as JSON (a pickle, or
    another program's bytes) is dead-lettered and skipped. Dramatiq's own consumer raises DecodeError
    out of ``__next__``, and the worker restarts the consumer: the messages prefetched with the bad one
    are lost from its cache and stay unacked (their queue stalls) until the worker process ends."""

    def __init__(self, inner: Any, broker: Any) -> None:
        self._inner, self._broker = inner, broker

    def __iter__(self) -> _RefusingConsumer:
        return self

    def __next__(self) -> Any:
        while True:
            try:
                return next(self._inner)
            except DecodeError as exc:  # the data is never decoded further (never unpickled)
                self._dead_letter(exc.data)

    def _dead_letter(self, data: Any) -> None:
        queue = self._inner.queue_name
        key = f"{self._broker.namespace}:{queue}.msgs"
        found = next((mid for mid, body in self._broker.client.hscan_iter(key) if body == data), None)
        if found is not None:  # its id is only in the hash: find it there to move it to the DLQ (.XQ)
            self._broker.do_nack(queue, found.decode() if isinstance(found, bytes) else found)
        logging.getLogger("anytask.dramatiq").error(
            "refused a message on queue %r that is not JSON (%d bytes, never decoded further); %s", queue,
            len(data or b""), "moved to the dead-letter queue" if found is not None else "it was not found to dead-letter")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _refusing_undecodable(broker: Any) -> Any:
    consume = broker.consume

    def refusing_consume(queue_name: str, prefetch: int = 1, timeout: int = 5000) -> _RefusingConsumer:
        return _RefusingConsumer(consume(queue_name, prefetch, timeout), broker)

    return refusing_consume


def worker_broker() -> None:
    """Called by ``dramatiq`` in each worker process: build the broker, declare the actors, set it global."""
    url = os.environ.get(ENV_URL)
    if not url:
        raise ImportError(f"{ENV_URL} is not set: start workers with 'anytask worker URL --tasks MODULE'")
    dramatiq.set_encoder(JSONEncoder())  # Dramatiq's default; explicit, since anytask is JSON-only
    for module in filter(None, os.environ.get(ENV_MODULES, "").split(",")):
        importlib.import_module(module)
    adapter = DramatiqAdapter(parse_url(url))
    broker = adapter.worker_broker(os.environ.get(ENV_CONFIG, "defaults"))
    names = [n for n in os.environ.get(ENV_TASKS, "").split(",") if n]
    known = registered_tasks()
    for name in names:
        task = known.get(name)
        if task is None:
            raise ImportError(f"task {name!r} is not registered after importing {os.environ.get(ENV_MODULES)}")
        declare_actor(broker, adapter, task, broker.anytask_recorder)
    for q in filter(None, os.environ.get(ENV_QUEUES, "default").split(",")):
        broker.declare_queue(adapter.native_queue(q))  # a queue without actors of its own is consumed too
    # delivery guard (issue 7): an unacked message of a dead worker comes back; a poison one not for ever
    # (counted by StateMiddleware in the start script, see _START)
    dramatiq.set_broker(broker)
    if os.environ.get(ENV_BEAT):  # anytask worker --beat (see DramatiqAdapter.start_beat)
        _start_beat(adapter, os.environ[ENV_BEAT])


def _start_beat(adapter: DramatiqAdapter, modules: str) -> None:
    for module in filter(None, modules.split(",")):
        importlib.import_module(module)
    from ..facade.beat import Beat
    from ..facade.client import Client

    Beat(Client(adapter.url), [s for _, s in sorted(registered_schedules().items())]).start()


def declare_actor(broker: Any, adapter: DramatiqAdapter, task: Task[Any, Any], recorder: Recorder | None = None) -> Any:
    """Register ``task`` natively: actor_name=task.name and the task's declared options in Dramatiq units."""
    o = task.options
    options: dict[str, Any] = {"max_retries": o.retries, "min_backoff": round(o.retry_backoff * 1000),
                               "store_results": True, "result_ttl": RESULT_TTL_MS}
    if o.timeout is not None:
        options["time_limit"] = math.ceil(o.timeout * 1000)
    decorate = dramatiq.actor(actor_name=task.name, queue_name=adapter.native_queue(o.queue), broker=broker, **options)
    return decorate(_actor_function(task, recorder))


class DramatiqRedisAdapter(DramatiqAdapter):
    """``dramatiq+redis``: no message priority (the Redis broker is FIFO)."""

    capabilities = _capabilities(PRIORITY_REDIS)


class DramatiqAmqpAdapter(DramatiqAdapter):
    """``dramatiq+amqp``: RabbitMQ message priority (x-max-priority)."""

    capabilities = _capabilities(PRIORITY_AMQP)
