"""``taskiq+redis://`` and ``taskiq+amqp://``: TaskiQ brokers, results and states in Redis.

* ``taskiq+redis://HOST:PORT/DB`` -- taskiq-redis ``RedisStreamBroker`` (a Redis stream per queue, a
  consumer group, ack after the result is saved) and ``RedisAsyncResultBackend`` on the same Redis.
* ``taskiq+amqp://USER:PASS@HOST:5672/VHOST?result=redis://HOST:6379/DB`` -- taskiq-aio-pika
  ``AioPikaBroker``; results and states in the Redis of ``result`` (default redis://127.0.0.1:6379/0).

URL parameters: ``timeout`` (connect timeout, s, default 3), ``prefix`` (prepended to native queue,
stream, exchange and key names), ``result`` (amqp only), ``idle_timeout`` (redis only: seconds after
which a delivered but un-acked message is reclaimed by another worker, default 600 as in taskiq),
``queue_type`` (amqp only: ``classic``, the default, with x-max-priority 9, or ``quorum``, without
priorities), ``rate_hold`` (seconds a rate-limited task may wait in a worker slot before it is
re-enqueued, default 5).

Priority, cancel, rate limits, unique keys and result TTLs are described in docs/adapters/taskiq.md.

TaskiQ's client API is async-only and keeps no task states. The adapter runs one private event loop
in a daemon thread; every coroutine of the broker runs on that loop (the sync API submits to it with
``run_coroutine_threadsafe``, the async twins await it with ``asyncio.wrap_future``), so the sync API
works from plain code and from inside a running event loop. States are recorded by a
``TaskiqMiddleware`` (a ``SmartRetryMiddleware`` subclass, so retries use taskiq's own re-kick) into
the shared Redis state store. The worker is the library's own ``taskiq worker`` CLI, given a broker
factory (:func:`worker_broker`) that rebuilds the broker from environment variables. See
docs/adapters/taskiq.md.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, NoReturn, TypeVar

import redis
import redis.asyncio as aredis
from taskiq import AckableMessage, AsyncBroker, BrokerMessage, TaskiqEvents, TaskiqMessage, TaskiqResult, TaskiqState
from taskiq.exceptions import NoResultError
from taskiq.kicker import AsyncKicker
from taskiq.middlewares import SmartRetryMiddleware
from taskiq.receiver import Receiver
from taskiq.serializers import JSONSerializer
from taskiq.utils import maybe_awaitable
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from ..facade import execution
from ..facade.adapter import DEFAULT_CONNECT_TIMEOUT, Adapter, WorkerOptions
from ..facade.beat import emulated_how
from ..facade.schedule import Schedule  # --beat native (native_beat)
from ..facade.capabilities import Capabilities, Feature, emulated, native, unsupported
from ..facade.continuation import emulated_canvas, serve_canvas
from ..facade.errors import BrokerUnavailable, ConfigurationError, UnsupportedFeature, credentials_refused, refused_credentials
from ..facade.records import CancelOutcome, CancelResult, ErrorInfo, Message, TaskResult
from ..facade.patience import patiently
from ..facade.state import DEFAULT_TTL, Recorder
from ..facade.status import Status
from ..facade.task import Task, get_task, parse_rate
from ..facade.url import BackendURL, mask, parse_url
from ._delivery import install_redis_guard
from ._redis_state import RedisRateLimiter, RedisStateStore, broker_errors
from ._redis_state import connect as redis_connect

T = TypeVar("T")

DEFAULT_RESULT_URL = "redis://127.0.0.1:6379/0"
MAX_PRIORITY = 9  # facade priorities 0..9, higher first
RATE_HOLD = 5.0  # default seconds a rate-limited message may wait in its slot before it is re-enqueued

# Environment of the ``taskiq worker`` process (read by worker_broker()).
ENV_URL, ENV_MODULES, ENV_TASKS = "ANYTASK_TASKIQ_URL", "ANYTASK_TASKIQ_MODULES", "ANYTASK_TASKIQ_TASKS"
ENV_QUEUES, ENV_CONFIG, ENV_CONCURRENCY = "ANYTASK_TASKIQ_QUEUES", "ANYTASK_TASKIQ_CONFIG", "ANYTASK_TASKIQ_CONCURRENCY"


# -- state records: atomic start/cancel, expiry after the end ---------------------------------------
# Record fields are JSON strings (RedisStateStore), so a status reads as '"QUEUED"'.
_CANCEL = """
local s = redis.call('hget', KEYS[1], 'status')
if not s then return 'UNKNOWN' end
if s == '"QUEUED"' or s == '"SCHEDULED"' or s == '"RETRYING"' then
  redis.call('hset', KEYS[1], 'status', '"CANCELLED"', 'finished_at', ARGV[1], 'note', ARGV[2])
  local ttl = tonumber(redis.call('hget', KEYS[1], 'result_ttl') or '')
  local ms = ttl and math.max(1, math.floor(ttl * 1000)) or tonumber(ARGV[3]) * 1000
  redis.call('pexpire', KEYS[1], ms)
  local key = redis.call('hget', KEYS[1], 'unique_key')
  if key then
    local ukey = ARGV[4] .. cjson.decode(key)
    if redis.call('get', ukey) == ARGV[5] then redis.call('pexpire', ukey, ms) end
  end
  return 'CANCELLED'
end
return cjson.decode(s)
"""
_START_UNLESS_CANCELLED = """
if redis.call('hget', KEYS[1], 'status') == '"CANCELLED"' then return 0 end
redis.call('hset', KEYS[1], 'status', '"RUNNING"', 'started_at', ARGV[1], 'attempts', ARGV[2])
redis.call('expire', KEYS[1], ARGV[3])
return 1
"""
# KEYS: the record [, the unique key]; ARGV: ttl (ms), task id, then field/value pairs
_FINISH = """
redis.call('hset', KEYS[1], unpack(ARGV, 3))
redis.call('pexpire', KEYS[1], ARGV[1])
if #KEYS > 1 and redis.call('get', KEYS[2]) == ARGV[2] then redis.call('pexpire', KEYS[2], ARGV[1]) end
return 1
"""
_CANCEL_NOTE = "cancelled before start: the worker consumes and skips its message"


class _Recorder(Recorder):
    """Recorder with atomic start and cancel, whose final write expires the record (and the task's
    unique key) after the task's ``result_ttl`` (default: a week)."""

    store: RedisStateStore

    def __init__(self, store: RedisStateStore) -> None:
        super().__init__(store)
        self._cancel = store.client.register_script(_CANCEL)
        self._start = store.client.register_script(_START_UNLESS_CANCELLED)
        self._finish = store.client.register_script(_FINISH)

    def unique_name(self, key: str) -> str:
        return f"{self.store.prefix}unique:{key}"  # RedisStateStore.claim_unique's key

    def _final(self, task_id: str, fields: dict[str, Any], ttl: float | None, unique_key: str | None) -> None:
        ms = max(1, int((DEFAULT_TTL if ttl is None else ttl) * 1000))  # result_ttl=0 expires too
        keys = [self.store.key(task_id)] + ([self.unique_name(unique_key)] if unique_key else [])
        pairs = [x for k, v in fields.items() for x in (k, json.dumps(v))]
        with broker_errors("writing task state", self.store.url):
            self._finish(keys=keys, args=[ms, task_id, *pairs])

    def finish_ok(self, task_id: str, value: Any, ttl: float | None, unique_key: str | None = None) -> None:
        self._final(task_id, {"status": Status.SUCCEEDED.value, "finished_at": time.time(), "error": None,
                              "value": value}, ttl, unique_key)

    def finish_failed(self, task_id: str, error: ErrorInfo, *, will_retry: bool, ttl: float | None,
                      unique_key: str | None = None) -> None:
        if will_retry:
            self.failed(task_id, error, will_retry=True)
        else:
            self._final(task_id, {"status": Status.FAILED.value, "error": error.to_dict(),
                                  "finished_at": time.time()}, ttl, unique_key)

    def start_unless_cancelled(self, task_id: str, attempt: int) -> bool:
        """RUNNING, in one script, unless the record says CANCELLED (then False: skip the message)."""
        with broker_errors("writing task state", self.store.url):
            return bool(self._start(keys=[self.store.key(task_id)],
                                    args=[json.dumps(time.time()), attempt, int(self.ttl or DEFAULT_TTL)]))

    def is_cancelled(self, task_id: str) -> bool:
        with broker_errors("reading task state", self.store.url):
            return self.store.client.hget(self.store.key(task_id), "status") == b'"CANCELLED"'

    def cancel_before_start(self, task_id: str) -> Status:
        """CANCELLED if still waiting (QUEUED/SCHEDULED/RETRYING), in one script; else the status seen."""
        with broker_errors("cancelling a task", self.store.url):
            seen = self._cancel(keys=[self.store.key(task_id)],
                                args=[json.dumps(time.time()), json.dumps(_CANCEL_NOTE), int(self.ttl or DEFAULT_TTL),
                                      self.unique_name(""), task_id])
        return Status(seen.decode() if isinstance(seen, bytes) else seen)


# -- configuration shared by client and worker ------------------------------------------------------
class _Conf:
    """Names and URLs derived from a backend URL; identical in the client and the worker."""

    def __init__(self, url: BackendURL) -> None:
        if url.transport not in ("redis", "amqp"):
            raise ConfigurationError(f"taskiq supports taskiq+redis:// and taskiq+amqp://, not {url.masked!r}")
        self.url = url
        self.transport = url.transport
        self.prefix = url.params.get("prefix", "")
        try:
            self.timeout = float(url.params.get("timeout", DEFAULT_CONNECT_TIMEOUT))
        except ValueError:
            raise ConfigurationError(f"timeout must be a number of seconds in {url.masked!r}") from None
        self.result_url = url.broker_url if self.transport == "redis" else url.params.get("result", DEFAULT_RESULT_URL)
        try:
            self.idle_timeout = float(url.params.get("idle_timeout", 600))
        except ValueError:
            raise ConfigurationError(f"idle_timeout must be a number of seconds in {url.masked!r}") from None
        try:
            self.rate_hold = float(url.params.get("rate_hold", RATE_HOLD))
        except ValueError:
            raise ConfigurationError(f"rate_hold must be a number of seconds in {url.masked!r}") from None
        self.queue_type = url.params.get("queue_type", "classic")
        if self.queue_type not in ("classic", "quorum"):
            raise ConfigurationError(f"queue_type must be 'classic' or 'quorum' in {url.masked!r}")
        self.state_prefix = f"anytask:taskiq:{self.prefix}state:"
        self.result_prefix = f"anytask:taskiq:{self.prefix}result"  # taskiq appends ":<task id>"
        self.rate_prefix = self.state_prefix + "rate:"  # sliding windows; each expires one period after use

    def queue(self, name: str) -> str:
        return self.prefix + name

    @property
    def has_priority(self) -> bool:
        return self.transport == "redis" or self.queue_type == "classic"

    def stream(self, name: str, priority: int | None) -> str:
        """taskiq+redis: the stream of a queue at a priority (0/None: the queue's own stream; ':' cannot
        occur in anytask queue names, so ``<queue>:p<n>`` never collides with a queue)."""
        return self.queue(name) + (f":p{priority}" if priority else "")

    def streams(self, queues: Sequence[str]) -> list[str]:
        """Every stream of ``queues``, priority-major: all ``:p9`` streams first, the plain ones last."""
        return [self.stream(q, p) for p in range(MAX_PRIORITY, -1, -1) for q in queues]

    def amqp_queue(self, native_name: str) -> Any:
        from taskiq_aio_pika import Queue
        from taskiq_aio_pika.queue import QueueType

        if self.queue_type == "quorum":
            return Queue(name=native_name, type=QueueType.QUORUM)
        # RabbitMQ 3.x quorum queues have no priorities: classic queues with x-max-priority
        return Queue(name=native_name, type=QueueType.CLASSIC, max_priority=MAX_PRIORITY)

    def recorder(self) -> _Recorder:
        client = redis_connect(self.result_url, self.timeout, read_timeout=self.timeout)  # no blocking reads here
        return _Recorder(RedisStateStore(client, self.state_prefix, self.result_url))

    def broker(self, queues: Sequence[str] = ("default",), *, worker: bool = False, config: str = "defaults",
               concurrency: int = 2) -> AsyncBroker:
        native_queues = [self.queue(q) for q in queues]
        backend: RedisAsyncResultBackend[Any] = RedisAsyncResultBackend(
            self.result_url, keep_results=True, result_ex_time=int(DEFAULT_TTL), serializer=JSONSerializer(),
            prefix_str=self.result_prefix, socket_connect_timeout=self.timeout, socket_timeout=max(self.timeout, 5.0))
        broker: AsyncBroker
        if self.transport == "redis":
            streams = self.streams(queues) if worker else native_queues
            broker = _AckDeletingStreamBroker(
                self.url.broker_url, queue_name=streams[0],
                additional_streams={q: ">" for q in streams[1:]},  # XREADGROUP reads them in this order
                consumer_id="0",  # trap: the default "$" skips messages sent before the first worker started
                idle_timeout=int(self.idle_timeout * 1000),  # un-acked messages are reclaimed after this
                xread_count=concurrency if config == "reliable" else 100,
                socket_connect_timeout=self.timeout,
                socket_timeout=None if worker else max(self.timeout, 5.0))
        else:
            from taskiq_aio_pika import AioPikaBroker, Exchange, Queue

            qos = {"reliable": concurrency, "tuned": 4 * concurrency}.get(config, 10)
            broker = AioPikaBroker(
                self.url.broker_url, exchange=Exchange(name=f"{self.prefix}taskiq"),
                task_queues=[self.amqp_queue(q) for q in native_queues],
                dead_letter_queue=Queue(name=f"{self.prefix}taskiq.dead_letter"),
                qos=qos, timeout=self.timeout)
        broker = broker.with_result_backend(backend)
        broker.add_middlewares(_StateMiddleware(self.recorder() if worker else None, self.result_prefix))
        setattr(broker, "anytask_conf", self)  # noqa: B010 - read back by the receiver (_conf_of)
        return broker


class _AckDeletingStreamBroker(RedisStreamBroker):
    """Trap (soak, issue 7): RedisStreamBroker acknowledges with XACK alone, which leaves the entry in the
    stream, so the stream keeps every message ever sent (26.9 MB after 100,000 no-op tasks) until someone
    trims it. Its ``maxlen`` option trims by count and would drop messages not yet read under a backlog.
    This ack deletes the entry with the XACK, in one MULTI: safe because anytask's streams have one consumer
    group (the broker's), and an entry is deleted only once that group is done with it."""

    def _ack_generator(self, id: str, queue_name: str) -> Any:  # noqa: A002 - the library's signature
        async def _ack() -> None:
            async with aredis.Redis(connection_pool=self.connection_pool) as conn:
                async with conn.pipeline(transaction=True) as pipe:
                    pipe.xack(queue_name, self.consumer_group_name, id)
                    pipe.xdel(queue_name, id)
                    await pipe.execute()

        return _ack


def _labels(conf: _Conf, task: Task[Any, Any]) -> dict[str, Any]:
    """Taskiq labels carrying a task's options (read by the brokers, the receiver and the middleware)."""
    o = task.options
    labels: dict[str, Any] = {"queue_name": conf.queue(o.queue)}
    if o.priority is not None:
        if conf.transport == "redis":
            labels["queue_name"] = conf.stream(o.queue, o.priority)  # RedisStreamBroker XADDs to this stream
        else:
            labels["priority"] = o.priority  # AioPikaBroker: the AMQP message priority
    if o.rate_limit is not None:
        labels["rate_limit"] = o.rate_limit
    if o.result_ttl is not None:
        labels["result_ttl"] = float(o.result_ttl)
    if o.unique_key is not None:
        labels["unique_key"] = o.unique_key  # the final write expires the claim with the record
    if o.retries:
        # trap: taskiq's max_retries counts runs (retry while _retries+1 < max_retries)
        labels.update(retry_on_error=True, max_retries=o.retries + 1, retry_backoff=float(o.retry_backoff))
    if o.timeout is not None:
        labels["timeout"] = float(o.timeout)
    return labels


# -- worker side ------------------------------------------------------------------------------------
_message: contextvars.ContextVar[TaskiqMessage | None] = contextvars.ContextVar("anytask_taskiq_msg", default=None)


def _attempt(message: TaskiqMessage) -> int:
    return int(message.labels.get("_retries", 0)) + 1


def _result_ttl(message: TaskiqMessage) -> float | None:
    ttl = message.labels.get("result_ttl")
    return None if ttl is None else float(ttl)


def _unique_key(message: TaskiqMessage) -> str | None:
    key = message.labels.get("unique_key")
    return None if key is None else str(key)


class _StateMiddleware(SmartRetryMiddleware):
    """Records SUCCEEDED/RETRYING/FAILED and retries with taskiq's own re-kick (RUNNING, the cancelled
    skip and the rate limit are in :class:`AnytaskReceiver`, before any middleware hook runs).

    Retries are SmartRetryMiddleware's (same task id, ``_retries`` label); only the delay differs:
    neither RedisStreamBroker nor AioPikaBroker (without a delay queue/plugin) honours the ``delay``
    label, so the worker waits the exponential backoff itself before re-kicking.
    """

    def __init__(self, recorder: _Recorder | None, result_prefix: str = "") -> None:
        super().__init__(default_retry_count=1, default_retry_label=False, no_result_on_retry=True,
                         default_delay=0.0)
        self.recorder = recorder
        self.result_prefix = result_prefix

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        _message.set(message)  # same asyncio task as run_task; copied into the sync-task thread
        return message

    @staticmethod
    def _end(write: Callable[[], None], what: str) -> Coroutine[Any, Any, None] | None:
        """Write a task's end now (the usual, fast path, on the event loop); if Redis does not answer
        (restarting), a coroutine retrying it in a thread for up to WORKER_PATIENCE s, so the loop and
        the other tasks are not blocked and the end is not lost. taskiq awaits what a hook returns."""
        try:
            write()
            return None
        except BrokerUnavailable:
            return asyncio.to_thread(patiently, write, what)

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> Coroutine[Any, Any, None] | None:
        if self.recorder is None or result.is_err:
            return None
        rec = self.recorder
        return self._end(lambda: rec.finish_ok(message.task_id, result.return_value, _result_ttl(message),
                                               _unique_key(message)), f"writing the end of task {message.task_id}")

    def post_save(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        """result_ttl: taskiq's result key expires with the state record (the backend's result_ex_time
        is one value for every task)."""
        ttl = _result_ttl(message)
        if self.recorder is not None and ttl is not None:
            with broker_errors("expiring a result", self.recorder.store.url):
                self.recorder.store.client.pexpire(f"{self.result_prefix}:{message.task_id}", max(1, int(ttl * 1000)))

    def make_delay(self, message: TaskiqMessage, retries: int) -> float:
        base = float(message.labels.get("retry_backoff", 0.0))
        return base * 2.0 ** max(0, retries - 1)

    async def on_send(self, kicker: AsyncKicker[Any, Any], message: TaskiqMessage, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        if self.recorder is not None and self.recorder.is_cancelled(message.task_id):
            return  # cancelled while its retry was pending: send nothing
        await kicker.kiq(*message.args, **message.kwargs)

    async def on_error(self, message: TaskiqMessage, result: TaskiqResult[Any], exception: BaseException) -> None:
        if self.recorder is None or isinstance(exception, NoResultError):
            return
        info = ErrorInfo.from_exception(exception)
        timeout = message.labels.get("timeout")
        if isinstance(exception, TimeoutError) and timeout is not None and not info.message:
            info = ErrorInfo(info.type, f"task exceeded its time limit of {timeout}s", info.traceback)
        will_retry = (self.is_retry_on_error(message)
                      and _attempt(message) < int(message.labels.get("max_retries", self.default_retry_count)))
        ttl = _result_ttl(message)
        rec = self.recorder
        pending = self._end(lambda: rec.finish_failed(message.task_id, info, will_retry=will_retry, ttl=ttl,
                                                      unique_key=_unique_key(message)),  # before the re-kick
                            f"writing the failure of task {message.task_id}")
        if pending is not None:
            await pending
        if not will_retry:
            return
        try:
            await super().on_error(message, result, exception)
        except Exception as exc:  # noqa: BLE001 - the retry could not be sent: the task has failed
            note = ErrorInfo.from_exception(exc)
            self.recorder.finish_failed(message.task_id, ErrorInfo(info.type, f"{info.message} (retry not sent: "
                                        f"{note.type}: {note.message})", info.traceback), will_retry=False, ttl=ttl,
                                        unique_key=_unique_key(message))


_worker_recorder: _Recorder | None = None  # the worker process's recorder (progress writes)


def _native_function(task: Task[Any, Any]) -> Any:
    """The function registered in taskiq: sets the TaskContext and runs the task through execution.call.

    It deliberately has a bare ``(*args, **kwargs)`` signature (no functools.wraps): taskiq would
    otherwise coerce arguments with pydantic from the annotations, unlike every other backend.
    """

    def context() -> execution.TaskContext:
        msg = _message.get()
        report = None
        if msg is not None and _worker_recorder is not None:
            recorder, task_id = _worker_recorder, msg.task_id

            def report(data: dict[str, Any]) -> None:
                recorder.progress(task_id, data)  # one HSET of the state record's 'progress' field

        return execution.TaskContext(msg.task_id if msg else "", task.name, _attempt(msg) if msg else 1, report)

    if task.is_async:
        async def run(*args: Any, **kwargs: Any) -> Any:
            with execution.task_context(context()):
                return await execution.acall(task, args, kwargs)
    else:
        def run(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            with execution.task_context(context()):
                return execution.call(task, args, kwargs)

    run.__name__ = task.func.__name__
    run.__qualname__ = task.func.__qualname__
    run.__module__ = task.func.__module__
    run.__doc__ = task.func.__doc__
    return run


class AnytaskReceiver(Receiver):
    """taskiq's Receiver, plus what must happen before a task runs (no middleware hook can skip one):

    * a message for a task this worker does not know is recorded FAILED (trap: the stock receiver acks
      and drops it with a warning before any middleware hook runs, so it would stay QUEUED forever);
    * CANCEL: a message whose record is CANCELLED is acked and skipped; RUNNING is written by one Redis
      script that refuses a CANCELLED record, so a cancel and a start cannot both win;
    * RATE_LIMIT: the ``rate_limit`` label takes a slot of the cluster-wide sliding window
      (RedisRateLimiter, per task name) before the task starts.
    """

    async def callback(self, message: bytes | AckableMessage, raise_err: bool = False) -> None:
        data = message.data if isinstance(message, AckableMessage) else message
        try:
            parsed = self.broker.formatter.loads(message=data)
            parsed.parse_labels()
        except Exception:  # noqa: BLE001 - the stock receiver logs and drops unparsable messages
            parsed = None
        mw = _state_middleware(self.broker)
        recorder = mw.recorder if mw is not None else None
        if parsed is not None and recorder is not None:
            if self.broker.find_task(parsed.task_name) is None:
                recorder.failed(parsed.task_id, ErrorInfo(
                    "anytask.facade.errors.TaskNotRegistered",
                    f"task {parsed.task_name!r} is not registered in the taskiq worker; start it with "
                    f"--tasks naming the module that defines it"), will_retry=False)
            else:
                if parsed.labels.get("rate_limit") and (recorder.is_cancelled(parsed.task_id)  # no slot for it
                                                        or not await self._rate_slot(parsed, message, recorder)):
                    await _ack(message)
                    return
                if not recorder.start_unless_cancelled(parsed.task_id, _attempt(parsed)):
                    await _ack(message)
                    return
        await super().callback(message, raise_err)

    async def _rate_slot(self, parsed: TaskiqMessage, message: bytes | AckableMessage, recorder: _Recorder) -> bool:
        """Wait for a rate-limit slot: True to run now; False when the message was re-enqueued instead.

        A wait up to ``rate_hold`` s (URL parameter, default 5) is spent in this async slot (the message
        stays un-acked); a longer one re-enqueues the message unchanged at the tail of its queue after
        ``rate_hold`` s, so a slot and an un-acked delivery are never held for long (taskiq's brokers
        have no delayed delivery)."""
        rate = parsed.labels.get("rate_limit")
        if not rate:
            return True
        count, period = parse_rate(str(rate))
        conf = _conf_of(self.broker)
        limiter = RedisRateLimiter(recorder.store.client, conf.rate_prefix, recorder.store.url)
        held = 0.0
        while True:
            wait = limiter.acquire(parsed.task_name, count, period, uuid.uuid4().hex)
            if wait <= 0:
                return True
            if held >= conf.rate_hold:
                await self.broker.kick(BrokerMessage(task_id=parsed.task_id, task_name=parsed.task_name,
                                                     message=message.data if isinstance(message, AckableMessage)
                                                     else message, labels=parsed.labels))
                return False
            pause = min(wait + 0.001, conf.rate_hold - held)
            await asyncio.sleep(pause)
            held += pause


async def _ack(message: bytes | AckableMessage) -> None:
    if isinstance(message, AckableMessage):
        await maybe_awaitable(message.ack())


def _state_middleware(broker: AsyncBroker) -> _StateMiddleware | None:
    for middleware in broker.middlewares:
        if isinstance(middleware, _StateMiddleware):
            return middleware
    return None


def _conf_of(broker: AsyncBroker) -> _Conf:
    conf: _Conf = getattr(broker, "anytask_conf")  # noqa: B009
    return conf


def _split_env(name: str) -> list[str]:
    return [p for p in os.environ.get(name, "").split(",") if p]


def worker_broker() -> AsyncBroker:
    """Broker factory for ``taskiq worker anytask.adapters.taskiq:worker_broker`` (reads ANYTASK_TASKIQ_*)."""
    conf = _Conf(parse_url(os.environ[ENV_URL]))
    sys.path.insert(0, os.getcwd())
    for module in _split_env(ENV_MODULES):
        importlib.import_module(module)
    broker = conf.broker(_split_env(ENV_QUEUES) or ["default"], worker=True,
                         config=os.environ.get(ENV_CONFIG, "defaults"),
                         concurrency=int(os.environ.get(ENV_CONCURRENCY, "2")))
    global _worker_recorder
    mw = _state_middleware(broker)
    _worker_recorder = mw.recorder if mw is not None else None
    for name in _split_env(ENV_TASKS):
        task = get_task(name)
        broker.register_task(_native_function(task), task_name=task.name, **_labels(conf, task))
    broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, _start_ticker)
    broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, _stop_ticker)
    # delivery guard (issue 7): an unacked message of a dead worker comes back; a poison one not for ever
    install_redis_guard(conf.url, conf.result_url, f"taskiq:{conf.prefix}", conf.timeout)
    if conf.transport == "redis" and os.environ.get(ENV_CONFIG) == "reliable":
        broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, functools.partial(_start_reclaimer, broker))
        broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, _stop_reclaimer)
    return broker


# -- Delivery and faults (issue 7): re-queue what dead workers held (taskiq+redis, config reliable) ---------
async def _reclaim(broker: Any, period: float) -> None:
    """Trap: taskiq-redis runs XAUTOCLAIM only after an XREADGROUP that returned messages, so the pending
    entries of a killed worker stay un-run on an idle queue until new traffic comes after idle_timeout.
    Every ``period`` s this claims entries idle for ``idle_timeout`` and puts each back as a new stream
    entry (XADD + XACK + XDEL in one MULTI), which any consumer then reads; a crash between the claim and
    the MULTI leaves the entry pending, claimed again later. The task id travels in the data."""
    from redis.asyncio import Redis

    async with Redis(connection_pool=broker.connection_pool) as conn:
        while True:
            await asyncio.sleep(period)
            for stream in [broker.queue_name, *broker.additional_streams]:
                try:
                    _, claimed, *_ = await conn.xautoclaim(stream, broker.consumer_group_name, "anytask-reclaimer",
                                                           min_idle_time=broker.idle_timeout, count=100)
                    for msg_id, fields in claimed:
                        async with conn.pipeline(transaction=True) as pipe:
                            pipe.xadd(stream, fields)
                            pipe.xack(stream, broker.consumer_group_name, msg_id)
                            pipe.xdel(stream, msg_id)
                            await pipe.execute()
                        logging.getLogger("anytask.taskiq").warning("re-queued stream entry %s of %s, idle for %.0f s (a dead worker's)",
                                       msg_id, stream, broker.idle_timeout / 1000)
                except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                    logging.getLogger("anytask.taskiq").warning("reclaiming %s: %s (next try in %.0f s)", stream, exc, period)


def _start_reclaimer(broker: Any, state: TaskiqState) -> None:
    period = max(0.5, min(30.0, broker.idle_timeout / 2000))
    state.anytask_reclaimer = asyncio.get_running_loop().create_task(_reclaim(broker, period))


def _stop_reclaimer(state: TaskiqState) -> None:
    task = getattr(state, "anytask_reclaimer", None)
    if task is not None:
        task.cancel()


async def _tick() -> None:
    while True:
        await asyncio.sleep(0.2)


def _start_ticker(state: TaskiqState) -> None:
    """Trap: taskiq's SIGTERM/SIGINT handler sets an asyncio.Event from a plain signal handler, which does
    not wake the loop's select(): shutdown began only at the next timer (up to 5 s with aio-pika). A 0.2 s
    tick bounds that latency."""
    state.anytask_ticker = asyncio.get_running_loop().create_task(_tick())


def _stop_ticker(state: TaskiqState) -> None:
    ticker = getattr(state, "anytask_ticker", None)
    if ticker is not None:
        ticker.cancel()


# -- client side ------------------------------------------------------------------------------------
def _connection_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (OSError, redis.ConnectionError, redis.TimeoutError, asyncio.TimeoutError)
    try:  # taskiq+redis works without aio-pika installed
        import aiormq
    except ImportError:
        return errors
    return (*errors, aiormq.exceptions.AMQPConnectionError, aiormq.exceptions.ChannelInvalidStateError)


def _is_connection_error(exc: BaseException) -> bool:
    errors = _connection_errors()
    seen: BaseException | None = exc
    for _ in range(20):  # the cause chain, bounded (chains can be cyclic)
        if seen is None:
            break
        if isinstance(seen, errors):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _close_orphan_connections() -> None:
    """Trap: a connect_robust cancelled by our bound keeps aio-pika's reconnect loop running forever
    (it swallows CancelledError unless the connection was closed): close such orphans."""
    for t in asyncio.all_tasks():
        coro = t.get_coro()
        if t is asyncio.current_task() or "RobustConnection" not in getattr(coro, "__qualname__", ""):
            continue
        frame = getattr(coro, "cr_frame", None)
        conn = frame.f_locals.get("self") if frame is not None else None
        try:
            if conn is not None:
                await asyncio.wait_for(conn.close(), 1.0)
        except BaseException:  # noqa: BLE001 - best effort
            pass
        t.cancel()


def _stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    if not loop.is_closed():
        loop.call_soon_threadsafe(loop.stop)


class _Loop:
    """One private event loop in a daemon thread; every broker coroutine runs on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="anytask-taskiq-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except FutureTimeout:
            if fut.done():  # the coroutine's own TimeoutError (3.11: one class), e.g. the connect timeout
                raise
            fut.cancel()
            raise asyncio.TimeoutError(f"no answer within {timeout}s") from None

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


class TaskiqAdapter(Adapter):
    capabilities = Capabilities(
        features={
            Feature.RETRIES: native("taskiq SmartRetryMiddleware re-kicks the message with the same task id "
                                   "(max_retries = retries + 1, since taskiq counts runs); the worker waits "
                                   "retry_backoff * 2**(n-1) s before the re-kick (the brokers ignore or refuse "
                                   "the 'delay' label)"),
            Feature.TIMEOUT: native("the 'timeout' label: the receiver's anyio.fail_after fails the task with "
                                    "TimeoutError; a sync function's thread cannot be killed and runs on, "
                                    "its result discarded"),
            Feature.QUEUES: native("the 'queue_name' label: one Redis stream / one RabbitMQ queue per queue "
                                   "(with the URL's prefix); workers consume WorkerOptions.queues"),
            Feature.ASYNC_TASKS: native("async def tasks are awaited on the worker's event loop; sync tasks "
                                        "run in the receiver's thread pool"),
            Feature.DELAY: unsupported("taskiq delays need a separate 'taskiq scheduler' process with a "
                                       "schedule source; RedisStreamBroker ignores the 'delay' label and "
                                       "AioPikaBroker needs a single-target TTL delay queue (head-of-line "
                                       "blocking) or the delayed-message plugin"),
            Feature.PRIORITY: emulated(
                "amqp: native AMQP message priority (aio-pika's 'priority' label) on classic queues declared with "
                "x-max-priority 9; a worker's prefetch (qos 10, reliable: N) runs in delivery order. redis: no "
                "priority in Redis streams: one stream per queue and priority 1..9 beside the queue's own (0), read "
                "by one XREADGROUP in priority order, so priority orders what one read fetches (up to xread_count "
                "per stream: 100, reliable N); messages fetched earlier run first"),
            Feature.CANCEL: emulated(
                "before start only: the state record turns CANCELLED (one Redis script, only from QUEUED/"
                "RETRYING) and the worker's receiver acks and skips the message (RUNNING is written by a script "
                "that refuses a CANCELLED record); taskiq has no cancel API and cannot stop a running task: "
                "NOT_INTERRUPTIBLE"),
            Feature.PROGRESS: emulated("anytask.progress() writes the 'progress' field of anytask's state record "
                                       "(one HSET); taskiq's own ProgressTracker/set_progress is not used"),
            **emulated_canvas({
                Feature.CHAIN: "taskiq's pipelines are the separate taskiq-pipelines package (not a dependency)",
                Feature.GROUP: "taskiq has no group primitive",
                Feature.CHORD: "taskiq has no chord primitive"}),  # canvas (docs/canvas.md)
            Feature.RATE_LIMIT: emulated(
                "taskiq has no rate limiter: the worker's receiver takes a slot of a cluster-wide Redis sliding "
                "window per task name (RedisRateLimiter) before the start; it waits in its async slot (message "
                "un-acked) up to rate_hold s (URL parameter, default 5), then re-enqueues the message at the tail "
                "of its queue (taskiq's brokers have no delayed delivery)"),
            Feature.UNIQUE: emulated("taskiq has no unique-task lock: Redis SET NX on the state store "
                                     "(RedisStateStore.claim_unique) before the kick; the claim lives as long as "
                                     "the task's record (a week while pending, result_ttl after the end)"),
            Feature.RESULT_TTL: emulated(
                "RedisAsyncResultBackend's result_ex_time is one value per backend: the final state write "
                "PEXPIREs the record after result_ttl s and a post_save middleware hook PEXPIREs taskiq's result key"),
            Feature.PERIODIC: emulated(emulated_how(  # anytask/facade/beat.py, docs/periodic.md
                "claim_unique (SET NX on the state Redis)",
                "Not TaskiqScheduler: a separate 'taskiq scheduler' process in which every running scheduler "
                "fires its LabelScheduleSource on its own (run one), kicking with taskiq's ids outside anytask's "
                "submit. Opt-in 'anytask worker --beat native': TaskiQ's SchedulerLoop in a child process "
                "(interval whole seconds, cron UTC), its on_ready sending through anytask's submit; run exactly one")),
        },
        needs_worker=True,
        delivery="at-least-once (ack after the result is saved: taskiq's default ack_type when_saved; a dead "
                 "worker's messages come back at once on RabbitMQ, on Redis only when a consumer reads new "
                 "messages after they were idle for idle_timeout, default 600 s)",
        delivery_reliable="at-least-once (ack when_saved, no prefetch; on Redis anytask's reclaimer re-queues "
                          "stream entries idle for idle_timeout every idle_timeout/2 s, also on an idle queue; "
                          "the delivery guard fails a task whose worker died max_deliveries times)",
        brokers=("redis", "amqp"),
    )

    def __init__(self, url: BackendURL) -> None:
        super().__init__(url)
        self.conf = _Conf(url)
        self.recorder = self.conf.recorder()
        self._lock = threading.Lock()
        self._loop: _Loop | None = None
        self._broker: AsyncBroker | None = None
        self._started: asyncio.Future[None] | None = None
        self._queues: set[str] = set()
        self._areader: aredis.Redis | None = None

    # -- private loop and lazy broker start ----------------------------------------------------------
    @property
    def _io(self) -> _Loop:
        with self._lock:
            if self._loop is None:
                self._loop = _Loop()
                # an adapter dropped without close() must not leave its loop thread running
                weakref.finalize(self, _stop_loop, self._loop.loop)
            return self._loop

    @property
    def _op_timeout(self) -> float:
        return self.connect_timeout + 10.0

    def _unavailable(self, what: str, exc: BaseException) -> BrokerUnavailable:
        where = self.url.masked
        if refused_credentials(exc):
            return credentials_refused(what, "the taskiq broker", where, mask(repr(exc.__cause__ or exc)))
        return BrokerUnavailable(f"{what}: the taskiq broker at {where} did not answer "
                                 f"({mask(repr(exc.__cause__ or exc))}); is it running? Check the URL")

    async def _broker_started(self) -> AsyncBroker:
        """Start the broker once (bounded by the connect timeout); runs on the private loop."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            broker = self.conf.broker()
            try:
                # aio-pika's own connect timeout (self.timeout) fires first; this bounds the rest of startup
                await asyncio.wait_for(broker.startup(), self.connect_timeout + 1.0)
            except BaseException as exc:
                self._started.set_exception(exc)
                self._started.exception()  # retrieved: no "never retrieved" warning
                self._started = None
                try:
                    await asyncio.wait_for(broker.shutdown(), 2.0)
                except BaseException:  # noqa: BLE001 - best effort cleanup of a half-started broker
                    pass
                if self.conf.transport == "amqp":
                    await _close_orphan_connections()
                raise
            self._broker = broker
            self._queues = {self.conf.queue("default")}
            self._started.set_result(None)
        else:
            await asyncio.shield(self._started)
        assert self._broker is not None
        return self._broker

    async def _declare(self, broker: AsyncBroker, native_queue: str) -> None:
        """AMQP: declare and bind a queue before publishing to it (an unbound routing key drops the message)."""
        if native_queue in self._queues or self.conf.transport != "amqp":
            return
        self._queues.add(native_queue)
        broker.with_queue(self.conf.amqp_queue(native_queue))  # type: ignore[attr-defined]
        try:
            await broker._declare_queues(broker.write_channel)  # type: ignore[attr-defined]
        except BaseException:
            self._queues.discard(native_queue)
            # forget it: every later _declare_queues would declare it again and fail the same way
            broker.with_queues(*[q for q in broker._task_queues if q.name != native_queue])  # type: ignore[attr-defined]
            raise

    async def _kick(self, task: Task[Any, Any], message: Message) -> None:
        broker = await self._broker_started()
        labels = _labels(self.conf, task)
        try:
            await asyncio.wait_for(self._declare(broker, labels["queue_name"]), self._op_timeout)
            kicker: AsyncKicker[Any, Any] = AsyncKicker(task_name=task.name, broker=broker, labels=labels)
            await asyncio.wait_for(kicker.with_task_id(message.id).kiq(*message.args, **message.kwargs),
                                   self._op_timeout)
        except BaseException as exc:
            # a lost connection (also Redis: its pool would hand out a dead connection after a broker restart)
            if isinstance(exc, asyncio.TimeoutError) or _is_connection_error(exc):
                await self._reset(broker)
            raise

    async def _reset(self, broker: AsyncBroker) -> None:
        """AMQP connection lost: drop the broker (closing aio-pika's robust reconnect loop) so that the
        next call starts a fresh one, fail-fast and bounded, instead of waiting on a background reconnect."""
        if self._broker is not broker:
            return
        self._broker, self._started, self._queues = None, None, set()
        try:
            await asyncio.wait_for(broker.shutdown(), 2.0)
        except BaseException:  # noqa: BLE001 - the connection is gone already
            pass

    def _raise_translated(self, what: str, exc: BaseException) -> NoReturn:
        """Re-raise ``exc``, as BrokerUnavailable when the broker did not answer."""
        if isinstance(exc, asyncio.TimeoutError) or _is_connection_error(exc):
            raise self._unavailable(what, exc) from None
        if type(exc).__name__ == "ChannelPreconditionFailed":  # aiormq; not imported for taskiq+redis
            raise ConfigurationError(
                f"{what}: RabbitMQ at {self.url.masked} has a queue of that name declared with other arguments "
                f"({exc}). anytask declares {self.conf.queue_type} queues"
                + (" with x-max-priority 9" if self.conf.queue_type == "classic" else "")
                + " and a dead-letter queue: delete the old queue, or pick the matching queue_type= URL parameter"
                " (quorum queues were the default before priorities)") from None
        raise exc

    # -- producer side --------------------------------------------------------------------------------
    def _check(self, task: Task[Any, Any]) -> dict[str, Any]:
        """Refuse what this URL cannot do; the record's extra fields (result_ttl, read by cancel())."""
        if task.options.priority is not None and not self.conf.has_priority:
            raise UnsupportedFeature(self.name, f"priority (task {task.name})",
                                     "queue_type=quorum: RabbitMQ 3.x quorum queues have no message priorities; "
                                     "use the default queue_type=classic (x-max-priority queues)")
        extra: dict[str, Any] = {"queue": task.options.queue}  # purge() drops the waiting ones of a queue
        if task.options.result_ttl is not None:
            extra["result_ttl"] = float(task.options.result_ttl)
        if task.options.unique_key is not None:
            extra["unique_key"] = task.options.unique_key
        return extra

    def submit(self, task: Task[Any, Any], message: Message) -> None:
        extra = self._check(task)
        try:
            self.recorder.submitted(message.id, task.name, enqueued_at=message.enqueued_at, extra=extra)
        except BrokerUnavailable:
            # taskiq+redis: the broker's pooled connections died too; without a reset the first send after the
            # broker's restart would read "Connection closed by server" on one of them (issue 7)
            if self._broker is not None and self.conf.transport == "redis":
                try:
                    self._io.run(self._reset(self._broker), 3.0)
                except BaseException:  # noqa: BLE001, S110 - the reset is best effort; the error below is the news
                    pass
            raise
        try:
            self._io.run(self._kick(task, message), self.connect_timeout + 2 * self._op_timeout)
        except BaseException as exc:
            self.recorder.forget(message.id)  # nothing half-written
            self._raise_translated(f"sending {task.name}", exc)

    async def asubmit(self, task: Task[Any, Any], message: Message) -> None:
        extra = self._check(task)
        await asyncio.to_thread(self.recorder.submitted, message.id, task.name, enqueued_at=message.enqueued_at,
                                extra=extra)
        try:
            await self._io.arun(self._kick(task, message))
        except BaseException as exc:
            await asyncio.to_thread(self.recorder.forget, message.id)
            if isinstance(exc, asyncio.CancelledError):
                raise
            self._raise_translated(f"sending {task.name}", exc)

    def get(self, task_id: str) -> TaskResult:
        return self.recorder.read(task_id)

    def cancel(self, task_id: str) -> CancelResult:
        """Before start: the record turns CANCELLED (one Redis script, only from QUEUED/RETRYING) and the
        worker acks and skips the message when it arrives. While running: taskiq cannot stop a task."""
        seen = self.recorder.cancel_before_start(task_id)
        if seen is Status.CANCELLED:
            return CancelResult(task_id, CancelOutcome.CANCELLED_BEFORE_START, Status.CANCELLED, _CANCEL_NOTE)
        if seen is Status.RUNNING:
            return CancelResult(task_id, CancelOutcome.NOT_INTERRUPTIBLE, seen,
                                "taskiq has no way to stop a running task: it will finish")
        return CancelResult(task_id, CancelOutcome.ALREADY_FINISHED, seen)

    def claim_unique(self, key: str, task_id: str, ttl: float) -> str | None:
        """SET NX; while the task is pending the claim lives as long as its record (a week), and the
        task's final write re-expires it with the record (result_ttl), so key and record end together."""
        return self.recorder.store.claim_unique(key, task_id, max(ttl, DEFAULT_TTL))

    def release_unique(self, key: str, task_id: str) -> None:
        self.recorder.store.release_unique(key, task_id)

    async def _aread(self, task_id: str) -> TaskResult:
        if self._areader is None:
            self._areader = aredis.Redis.from_url(self.conf.result_url, socket_connect_timeout=self.connect_timeout,
                                                  socket_timeout=max(self.connect_timeout, 5.0))
        with broker_errors("reading task state", self.conf.result_url):
            raw = await self._areader.hgetall(self.conf.state_prefix + task_id)
        if not raw:
            return TaskResult.unknown(task_id)
        rec = {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in raw.items()}
        rec["id"] = task_id
        return TaskResult.from_dict(rec)

    async def aget(self, task_id: str) -> TaskResult:
        return await self._io.arun(self._aread(task_id))

    def ping(self) -> None:
        with broker_errors("ping", self.conf.result_url):
            self.recorder.store.client.ping()
        try:
            self._io.run(self._broker_started(), self.connect_timeout + 2.0)
        except BaseException as exc:
            self._raise_translated("ping", exc)

    def _drop_waiting_records(self, queues: Sequence[str]) -> None:
        """The records (and unique claims) of the tasks that waited in ``queues``: their messages are gone.

        Records of started or finished tasks are kept until they expire, so a purge of one queue never
        turns another task's (or a cancelled task's) state into UNKNOWN."""
        store, wanted = self.recorder.store, {json.dumps(q).encode() for q in queues}
        waiting = {json.dumps(s.value).encode() for s in (Status.QUEUED, Status.SCHEDULED, Status.RETRYING)}
        skip = (store.prefix + "unique:", store.prefix + "rate:")
        with broker_errors("purging task states", self.conf.result_url):
            keys = [k for k in store.client.scan_iter(match=store.prefix + "*", count=1000)
                    if not k.decode().startswith(skip)]
            for i in range(0, len(keys), 500):
                batch = keys[i:i + 500]
                pipe = store.client.pipeline(transaction=False)
                for k in batch:
                    pipe.hmget(k, "status", "queue", "unique_key")
                for k, (status, queue, unique) in zip(batch, pipe.execute()):
                    if status in waiting and queue in wanted:
                        task_id = k.decode()[len(store.prefix):]
                        store.client.delete(k)
                        if unique is not None:
                            store.release_unique(json.loads(unique), task_id)

    def purge(self, queues: Sequence[str] = ("default",)) -> None:
        """Drop the waiting messages of ``queues`` and the records of the tasks that waited in them."""
        store = self.recorder.store
        if self.conf.transport == "redis":
            with broker_errors("purging queues", self.conf.result_url):
                for stream in self.conf.streams(queues):
                    if store.client.exists(stream):
                        store.client.xtrim(stream, maxlen=0, approximate=False)
            self._drop_waiting_records(queues)
            return

        async def purge_amqp() -> None:
            broker = await self._broker_started()
            for q in queues:
                await self._declare(broker, self.conf.queue(q))
                queue = await broker.write_channel.get_queue(self.conf.queue(q), ensure=False)  # type: ignore[attr-defined]
                await queue.purge()

        try:
            self._io.run(purge_amqp(), self.connect_timeout + self._op_timeout)
        except BaseException as exc:
            self._raise_translated("purging queues", exc)
        self._drop_waiting_records(queues)

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            async def shutdown() -> None:
                if self._broker is not None:
                    await self._broker.shutdown()
                if self._areader is not None:
                    await self._areader.aclose()

            try:
                loop.run(shutdown(), 5.0)
            except BaseException:  # noqa: BLE001 - closing must not raise
                pass
            loop.stop()
        self._broker, self._started, self._areader = None, None, None
        self.recorder.store.client.close()

    # -- worker side ----------------------------------------------------------------------------------
    def worker_command(self, options: WorkerOptions) -> list[str]:
        """``taskiq worker`` with the broker factory; 1 process x N async slots, N sync threads."""
        n = max(1, options.concurrency)
        cmd = [sys.executable, "-m", "taskiq", "worker", "anytask.adapters.taskiq:worker_broker",
               "--receiver", "anytask.adapters.taskiq:AnytaskReceiver", "--workers", "1", "--max-async-tasks", str(n), "--max-threadpool-threads", str(n),
               "--ack-type", "when_saved"]
        if options.config == "tuned":
            cmd += ["--max-prefetch", str(n)]
        elif options.config == "reliable":
            cmd += ["--max-prefetch", "0"]
        return cmd + list(options.extra)

    def native_beat(self, schedules: Sequence[Schedule]) -> Any:
        """``anytask worker --beat native``: TaskiQ's own scheduler loop (SchedulerLoop, what `taskiq scheduler` runs) in a child process (anytask/adapters/taskiq_beat.py)."""
        from .taskiq_beat import TaskiqNativeBeat

        return TaskiqNativeBeat(self, schedules)

    def run_worker(self, tasks: Sequence[Task[Any, Any]], options: WorkerOptions) -> int:
        serve_canvas(self.url.raw)  # canvas: continuations are submitted through this backend
        if options.config not in ("defaults", "tuned", "reliable"):
            raise ConfigurationError(f"unknown worker config {options.config!r}")
        env = {**os.environ,
               ENV_URL: self.url.raw,
               ENV_MODULES: ",".join(sorted({t.func.__module__ for t in tasks})),
               ENV_TASKS: ",".join(t.name for t in tasks),
               ENV_QUEUES: ",".join(options.queues),
               ENV_CONFIG: options.config,
               ENV_CONCURRENCY: str(max(1, options.concurrency))}
        proc = subprocess.Popen(self.worker_command(options), env=env)

        def forward(signum: int, _frame: Any) -> None:
            if proc.poll() is None:
                proc.send_signal(signum)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return proc.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    # -- describe_worker (benchmark harness, issue 4) --
    def describe_worker(self, options: WorkerOptions) -> dict[str, Any]:
        n = max(1, options.concurrency)
        knobs: dict[str, Any] = {"argv": ["taskiq", *self.worker_command(options)[3:]]}
        if self.url.transport == "amqp":
            knobs["qos"] = {"reliable": n, "tuned": 4 * n}.get(options.config, 10)
        return {"pool": f"1 process, {n} async slots + {n} sync threads", "processes": 1, "threads": n, "slots": n,
                "config": options.config, "knobs": knobs}
