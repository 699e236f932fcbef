"""``celery+redis://`` and ``celery+amqp://``: Celery 5 with its own worker, states and retries.

URL forms::

    celery+redis://HOST:6379/DB[?timeout=S&prefix=P&result=redis://...]
    celery+amqp://USER:PASS@HOST:5672/VHOST?result=redis://HOST:6379/DB[&timeout=S&prefix=P]

The Redis form uses the same Redis database as broker and result backend. The AMQP form sends
tasks through RabbitMQ (py-amqp) and keeps results in Redis (``result``, default
``redis://127.0.0.1:6379/0``). ``prefix`` is prepended to every native queue name; ``timeout``
(seconds, default 3) bounds every connection attempt.

Celery keeps its own states (PENDING/STARTED/RETRY/SUCCESS/FAILURE/REVOKED) in the result backend;
the adapter reads that raw meta (JSON, without reconstructing exception classes). Celery calls
an id it never saw PENDING, so the client also writes one small record per submission (enqueued_at,
eta) in the result Redis *before* publishing: PENDING + record = QUEUED/SCHEDULED, PENDING without
a record = UNKNOWN. The worker adds ``started_at`` to that record at every attempt (Celery stores
no start time). The same record carries what Celery has no per-message mechanism for: progress,
the cancel flag, result_ttl and unique_key. See docs/adapters/celery.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import amqp.exceptions  # type: ignore[import-untyped]
import redis
from billiard.einfo import ExceptionInfo  # type: ignore[import-untyped]
from celery import Celery, signals, states  # type: ignore[import-untyped]
from celery.canvas import chain as native_chain, chord as native_chord, group as native_group  # type: ignore[import-untyped]
from celery.exceptions import Ignore, Reject, SoftTimeLimitExceeded  # type: ignore[import-untyped]
from celery.utils.log import get_task_logger  # type: ignore[import-untyped]
from kombu.exceptions import OperationalError

from ..facade import execution
from ..facade.adapter import Adapter, WorkerOptions
from ..facade.beat import emulated_how
from ..facade.schedule import Schedule  # --beat native (native_beat)
from ..facade.capabilities import Capabilities, Feature, emulated, native, unsupported
from ..facade.errors import BrokerUnavailable, ConfigurationError, ResultTimeout, credentials_refused, refused_credentials
from ..facade.records import CancelOutcome, CancelResult, ErrorInfo, Message, TaskResult
from ..facade.state import DEFAULT_TTL
from ..facade.status import Status
from ..facade.task import Task, parse_rate
from ..facade.url import BackendURL, mask
from ._delivery import install_redis_guard, seconds_param
from ._redis_state import RedisRateLimiter, RedisStateStore, broker_errors

DEFAULT_RESULT_URL = "redis://127.0.0.1:6379/0"
logger = get_task_logger("anytask.adapters.celery")
MAX_PRIORITY = 9
HEADER = "anytask"  # custom message header carrying the per-submit options (kept by Celery on retry)
# What a publish/connect to a dead, wrong or silent broker raises (kombu wraps most as OperationalError).
BROKER_ERRORS = (OperationalError, OSError, socket.timeout, redis.RedisError, amqp.exceptions.AMQPError)

_STATES = {
    "STARTED": Status.RUNNING,
    "RETRY": Status.RETRYING,
    "SUCCESS": Status.SUCCEEDED,
    "FAILURE": Status.FAILED,
    "REVOKED": Status.CANCELLED,
}


# Lua scripts on anytask's record (a hash of JSON values, see RedisStateStore). Each makes one decision
# atomically, so a cancel and a worker's start can never both win.
#
# START (worker, before Celery stores STARTED): refuse if the task was cancelled, else mark this attempt
# running. Returns 1 (run) or 0 (cancelled).
_START = """
if redis.call('hexists', KEYS[1], 'cancelled') == 1 then return 0 end
redis.call('hset', KEYS[1], 'running', '1', 'started_at', ARGV[1], 'attempts', ARGV[2])
redis.call('expire', KEYS[1], ARGV[3])
return 1
"""
# CANCEL (client): 'before' if no attempt is running (the flag makes every later start refuse),
# 'running' if one is, 'missing' if there is no record.
_CANCEL = """
if redis.call('exists', KEYS[1]) == 0 then return 'missing' end
if redis.call('hexists', KEYS[1], 'running') == 1 then return 'running' end
if redis.call('hexists', KEYS[1], 'cancelled') == 0 then
  redis.call('hset', KEYS[1], 'cancelled', ARGV[1], 'finished_at', ARGV[2])
end
return 'before'
"""
_EXTEND_IF_OWNER = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end return 0"
# FINAL (after Celery stored SUCCESS/FAILURE/REVOKED): Celery's meta and anytask's record expire
# result_ttl seconds from now; the unique key (if this task still owns it) lives as long as the record.
# ARGV: task id, unique-key prefix, default ttl, result_ttl or '', unique_key or '', '1' = read both
# from the record instead.
_FINAL = """
local ttl, ukey = ARGV[4], ARGV[5]
if ARGV[6] == '1' then
  ttl = redis.call('hget', KEYS[2], 'result_ttl') or ''
  local u = redis.call('hget', KEYS[2], 'unique_key')
  if u then ukey = cjson.decode(u) else ukey = '' end
end
local t = tonumber(ARGV[3])
if ttl ~= '' and ttl ~= 'null' then
  t = math.max(1, math.ceil(tonumber(ttl)))
  redis.call('expire', KEYS[1], t)
  redis.call('expire', KEYS[2], t)
end
if ukey ~= '' then
  local k = ARGV[2] .. ukey
  if redis.call('get', k) == ARGV[1] then redis.call('expire', k, t) end
end
return t
"""


def request_options(request: Any) -> dict[str, Any] | None:
    """The per-submit options anytask put in the message header (None for a message without it)."""
    headers = getattr(request, "headers", None) or {}
    opts = headers.get(HEADER) if isinstance(headers, dict) else None
    return opts if isinstance(opts, dict) else None


def hard_limit(timeout: float) -> float:
    """The hard time limit that backs the soft one: the pool kills the child after a short grace."""
    return timeout + max(1.0, 0.1 * timeout)


def error_from_meta(result: Any, traceback: str | None) -> ErrorInfo:
    """An ErrorInfo from Celery's JSON exception dict, without importing the exception class."""
    if not isinstance(result, dict) or "exc_type" not in result:
        return ErrorInfo("celery.UnknownError", str(result), traceback or "")
    name = str(result.get("exc_type") or "Exception")
    module = result.get("exc_module")
    path = name if module in (None, "", "builtins") else f"{module}.{name}"
    args = result.get("exc_message")
    if path == "celery.utils.serialization.UnpickleableExceptionWrapper" and isinstance(args, (list, tuple)) \
            and len(args) == 4:  # Celery's stand-in for a class it could not pickle: report the real one
        module, name, args = args[0], args[1], args[2]
        path = str(name) if module in (None, "", "builtins") else f"{module}.{name}"
    if path == "celery.exceptions.NotRegistered":  # the worker's consumer failed a task name it does not know
        return ErrorInfo("anytask.facade.errors.TaskNotRegistered",
                         f"task {args[0] if isinstance(args, (list, tuple)) and args else args!r} is not registered "
                         "in the Celery worker; start it with --tasks naming the module that defines it "
                         "(Celery: NotRegistered)", traceback or "")
    if isinstance(args, (list, tuple)):
        message = "" if not args else str(args[0]) if len(args) == 1 else str(tuple(args))
    else:
        message = "" if args is None else str(args)
    if path == "billiard.exceptions.TimeLimitExceeded":  # the pool stores just the limit: say what it is
        message = f"task killed after its hard time limit of {message}s"
    return ErrorInfo(path, message, traceback or "")


def _timestamp(value: Any) -> float | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


class _App(Celery):  # type: ignore[misc]
    """A Celery app whose result backend does not subscribe on every publish.

    Trap: with a Redis result backend, ``send_task``/``apply_async`` call
    ``backend.on_task_call`` which SUBSCRIBEs the client to the task's result channel and keeps
    the subscription until ``AsyncResult.get()`` is called -- a pub/sub connection per client
    and a subscription per never-awaited task. anytask reads results by key, so it is a no-op.
    """

    #: called with (task_id, request) after a ready state (SUCCESS/FAILURE/REVOKED) was stored
    on_ready: Any = None

    def _get_backend(self) -> Any:
        backend = super()._get_backend()
        backend.on_task_call = lambda producer, task_id: None
        # canvas: celery.chord's header members .then() a barrier, which would SUBSCRIBE too (one channel per
        # member, kept for the life of the client); anytask never waits through AsyncResult
        backend.add_pending_result = lambda result, weak=False, start_drainer=True: result
        store_result = backend.store_result

        def store_and_expire(task_id: str, result: Any, state: str, traceback: Any = None, request: Any = None,
                             **kwargs: Any) -> Any:
            """Every final store, in the pool child or the main process (revoke, hard time limit),
            passes here: result_ttl is applied right after it (Celery's result_expires is per app)."""
            out = store_result(task_id, result, state, traceback=traceback, request=request, **kwargs)
            if state in states.READY_STATES and self.on_ready is not None:
                self.on_ready(task_id, request)
            return out

        backend.store_result = store_and_expire
        return backend


class CeleryAdapter(Adapter):
    capabilities = Capabilities(
        features={
            Feature.RETRIES: native("Task.retry(max_retries=retries, countdown=retry_backoff*2**n) in the "
                                    "wrapper; the RETRY state is Celery's own"),
            Feature.TIMEOUT: native("soft_time_limit=timeout (SoftTimeLimitExceeded in the task) and "
                                    "time_limit=timeout+grace (the prefork pool kills the child)"),
            Feature.QUEUES: native("apply_async(queue=prefix+queue); workers consume -Q prefix+queues"),
            Feature.ASYNC_TASKS: emulated("Celery has no async tasks: the worker wrapper runs the coroutine "
                                          "with asyncio.run inside the prefork child (one loop per call)"),
            Feature.DELAY: native("apply_async(eta=...); SCHEDULED is PENDING plus anytask's submit record "
                                  "with a future eta"),
            Feature.PRIORITY: native("apply_async(priority=...): RabbitMQ queues declared with x-max-priority=9 "
                                     "(task_queue_max_priority), priority = p; Redis transport priority_steps="
                                     "0..9 (one list per level), priority = 9 - p (kombu pops 0 first). No "
                                     "priority = 0 (lowest). Orders messages still in the broker: a worker's "
                                     "prefetched messages (prefetch_multiplier x concurrency) run first"),
            Feature.CANCEL: native("before start: a cancelled flag in anytask's record (checked atomically at "
                                   "every start), REVOKED stored, control.revoke broadcast (workers drop the "
                                   "message); while running: control.revoke(terminate=True, SIGTERM) kills "
                                   "the prefork child -> TERMINATED_WHILE_RUNNING once Celery stored REVOKED; "
                                   "no REVOKED within the wait (pool without terminate: solo/threads) -> "
                                   "NOT_INTERRUPTIBLE"),
            Feature.PROGRESS: emulated("anytask.progress() writes the progress into anytask's record in the "
                                       "result Redis (Task.update_state would replace Celery's STARTED state)"),
            # canvas (docs/canvas.md): Celery's own canvas, every part with anytask's record and header
            Feature.CHAIN: native(
                "celery.chain: the worker publishes the next link with the result prepended (before it stores the "
                "success); a failed link's FAILURE is propagated by Celery to the later links' results, and cancel() "
                "of a link marks the later links' records CANCELLED; every link's record is written at submit, so "
                "waiting links read QUEUED"),
            Feature.GROUP: native("celery.group: the members are published together under the facade's ids; "
                                  "GroupHandle gathers them in order"),
            Feature.CHORD: native(
                "celery.chord over the Redis result backend (its native chord counter, on_chord_part_return): "
                "the callback gets the member results in order, once; a failed member fails the callback with "
                "Celery's ChordError naming it"),
            Feature.RATE_LIMIT: emulated("cluster-wide sliding window in Redis (RedisRateLimiter) per task name, "
                                         "taken at each start in the worker; over the limit the message is "
                                         "re-published with eta=now+wait (same id, not a retry) and is "
                                         "SCHEDULED meanwhile. Celery's own rate_limit is per worker and per "
                                         "task registration, so it cannot carry a per-submit cluster-wide limit"),
            Feature.UNIQUE: emulated("SET NX on a key in the result Redis (RedisStateStore.claim_unique), held "
                                     "while the task's record lives; Celery has no uniqueness"),
            Feature.RESULT_TTL: emulated("Celery's result_expires is per app: after Celery stores SUCCESS/FAILURE/"
                                         "REVOKED, the result meta, anytask's record and the unique key get "
                                         "EXPIRE result_ttl (whole seconds, at least 1)"),
            Feature.PERIODIC: emulated(emulated_how(  # anytask/facade/beat.py, docs/periodic.md
                "claim_unique (SET NX on the result Redis)",
                "Not celery beat by default: Celery requires a single beat per schedule (two beats fire twice), and "
                "beat sends with its own ids outside anytask's submit (no submit record, unique key or JSON check). "
                "Opt-in 'anytask worker --beat native': celery beat embedded in the worker (-B, its schedule file in "
                "a temp dir), each due entry sent through anytask's submit; run exactly one")),
        },
        needs_worker=True,
        delivery="at-most-once (Celery acks a message when a worker takes it: a task whose worker is killed is lost)",
        delivery_reliable="at-least-once (task_acks_late + task_reject_on_worker_lost, prefetch 1; on Redis an "
                          "unacked message is restored after visibility_timeout; the delivery guard fails a task "
                          "whose worker died max_deliveries times)",
        brokers=("redis", "amqp"),
    )

    def __init__(self, url: BackendURL) -> None:
        super().__init__(url)
        if url.transport not in ("redis", "amqp"):
            raise ConfigurationError(f"celery supports the redis and amqp transports, not {url.transport!r} "
                                     f"({url.masked})")
        self.prefix = url.params.get("prefix", "")
        self.broker_url = url.broker_url
        default_result = url.broker_url if url.transport == "redis" else DEFAULT_RESULT_URL
        self.result_url = url.params.get("result", default_result)
        if not self.result_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(f"celery result store must be a redis:// URL, got {mask(self.result_url)!r}")
        self.ttl = DEFAULT_TTL
        self.app = self._make_app()
        self._redis: redis.Redis | None = None
        self._redis_pid = 0
        self._decisions: dict[str, tuple[str, Any]] = {}  # worker: task id -> what task_prerun decided
        self.app.on_ready = self._on_ready

    # -- configuration -----------------------------------------------------------------------
    def _make_app(self) -> Celery:
        ct = self.connect_timeout
        app = _App("anytask", set_as_current=False)
        app.conf.update(
            broker_url=self.broker_url,
            result_backend=self.result_url,  # trap: Celery's result backend is disabled by default
            task_serializer="json",
            result_serializer="json",
            accept_content=["json"],
            result_accept_content=["json"],
            result_extended=True,  # stores name/args/kwargs/retries/queue with the state
            task_track_started=True,  # STARTED -> RUNNING
            result_expires=int(self.ttl),
            task_default_queue=self.prefix + "default",
            task_create_missing_queues=True,
            enable_utc=True,
            timezone="UTC",
            # Trap: kombu retries a publish (and every reconnect) by default; a dead broker must give
            # BrokerUnavailable within the connect timeout instead.
            broker_connection_timeout=ct,
            task_publish_retry=True,
            task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0,
                                       "interval_max": 0},
            broker_connection_retry_on_startup=True,  # the worker waits for its broker at start
            # Trap: kombu's Redis transport has no socket_timeout by default: a port that accepts but
            # never answers hangs a publish forever (run_worker relaxes it for BRPOP).
            broker_transport_options=self._transport_options(ct),
            # PRIORITY: RabbitMQ orders by priority only in queues declared with x-max-priority (every
            # queue Celery declares for anytask gets it); on Redis see _transport_options.
            task_queue_max_priority=MAX_PRIORITY if self.url.transport == "amqp" else None,
            redis_socket_connect_timeout=ct,
            redis_socket_timeout=max(ct, 5.0),
            redis_retry_on_timeout=False,
            worker_hijack_root_logger=False,
            worker_redirect_stdouts=False,
        )
        return app

    def _transport_options(self, read_timeout: float) -> dict[str, Any]:
        if self.url.transport != "redis":
            return {}
        # Trap: kombu's Redis transport has no socket_timeout by default (see _make_app). PRIORITY: one list
        # per priority step; the default steps (0, 3, 6, 9) would merge the facade's ten levels into four.
        opts: dict[str, Any] = {"socket_connect_timeout": self.connect_timeout, "socket_timeout": read_timeout,
                                "priority_steps": list(range(MAX_PRIORITY + 1))}
        # Delivery and faults (issue 7): an unacked message (acks_late: one that was running) of a dead worker
        # is restored after visibility_timeout (kombu: 1 h), found by sweeps every interval x throttle s.
        vt = seconds_param(self.url, "visibility_timeout")
        if vt is not None:
            opts.update(visibility_timeout=vt, unacked_restore_interval=max(1.0, min(10.0, vt / 2)),
                        unacked_restore_throttle=1)
        return opts

    def native_priority(self, priority: int | None) -> int:
        """Facade priority (0..9, higher first; None = 0) -> the number kombu sends for this transport."""
        p = priority or 0
        return MAX_PRIORITY - p if self.url.transport == "redis" else p  # kombu's Redis pops 0 first

    def _queue(self, name: str) -> str:
        return self.prefix + name

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None or self._redis_pid != os.getpid():  # a fresh pool after a fork
            ct = self.connect_timeout  # every client command is short: the read timeout is the connect timeout
            self._redis = redis.Redis.from_url(self.result_url, socket_connect_timeout=ct, socket_timeout=ct,
                                               health_check_interval=30)
            self._redis_pid = os.getpid()
        return self._redis

    def _store(self) -> RedisStateStore:
        return RedisStateStore(self.redis, prefix=f"anytask:celery:{self.prefix}state:", url=self.result_url)

    @contextmanager
    def _result_store(self, what: str) -> Iterator[None]:
        """Redis errors of the result store as BrokerUnavailable (also a port where something else answers)."""
        try:
            with broker_errors(what, self.result_url):
                yield
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"{what}: the result store at {mask(self.result_url)} failed ({exc}); is it "
                                    "a Redis server?") from None

    def _broker_error(self, what: str, exc: BaseException) -> BrokerUnavailable:
        if refused_credentials(exc):
            return credentials_refused(what, "the Celery broker", mask(self.url.raw), mask(str(exc)))
        return BrokerUnavailable(f"{what}: the Celery broker at {mask(self.url.raw)} did not answer ({exc}); is "
                                 "it running? Check the URL or start one with 'anytask brokers up'")

    # -- producer side -----------------------------------------------------------------------
    def submit(self, task: Task[Any, Any], message: Message) -> None:
        o = task.options
        store = self._store()
        record, opts = self._submission(task, message)
        with self._result_store(f"recording the submission of {task.name}"):
            store.write(message.id, record, self.ttl)
            if o.unique_key is not None:  # the claim lives as long as the record (until on_ready)
                self.redis.eval(_EXTEND_IF_OWNER, 1, self._unique_key(o.unique_key), message.id, int(self.ttl))
        try:
            self.app.send_task(task.name, args=list(message.args), kwargs=dict(message.kwargs), **opts)
        except BaseException as exc:
            self._publish_failed(task.name, message.queue, [message.id], exc)

    def _submission(self, task: Task[Any, Any], message: Message) -> tuple[dict[str, Any], dict[str, Any]]:
        """The record written before publishing and the apply_async options of one submission."""
        o = task.options
        eta = message.options.get("eta")
        record: dict[str, Any] = {"task_name": task.name, "enqueued_at": message.enqueued_at, "eta": eta}
        header: dict[str, Any] = {"retries": o.retries, "retry_backoff": o.retry_backoff}
        for name in ("priority", "rate_limit", "result_ttl", "unique_key"):  # what the worker and on_ready need
            value = getattr(o, name)
            if value is not None:
                header[name] = value
                if name in ("result_ttl", "unique_key"):
                    record[name] = value
        opts: dict[str, Any] = {
            "task_id": message.id,
            "queue": self._queue(message.queue),
            "headers": {HEADER: header},
            "priority": self.native_priority(o.priority),
        }
        if eta is not None:
            opts["eta"] = datetime.fromtimestamp(eta, tz=UTC)
        if o.timeout is not None:
            opts["soft_time_limit"] = o.timeout
            opts["time_limit"] = hard_limit(o.timeout)
        return record, opts

    def _publish_failed(self, what: str, queue: str, ids: Sequence[str], exc: BaseException) -> NoReturn:
        """Nothing half-written: the records go with the failed publish; the error says what to do."""
        try:
            with self._result_store("deleting the submission record"):
                for task_id in ids:
                    self._store().delete(task_id)
        except BrokerUnavailable:
            pass
        if isinstance(exc, amqp.exceptions.PreconditionFailed):
            raise self._no_priority_queue(self._queue(queue), exc) from None
        if isinstance(exc, BROKER_ERRORS):
            raise self._broker_error(f"submitting {what}", exc) from None
        raise exc

    # -- canvas (docs/canvas.md): Celery's own chain / group / chord over the same records and options --
    def submit_chain(self, links: Sequence[tuple[Task[Any, Any], Message]]) -> None:
        ids = [m.id for _, m in links]  # each record names the later links: cancel() closes them too
        self._publish_canvas("a chain", links, lambda sigs: native_chain(*sigs),
                             [{"chain_rest": ids[i + 1:]} for i in range(len(ids))])

    def submit_group(self, members: Sequence[tuple[Task[Any, Any], Message]]) -> None:
        self._publish_canvas("a group", members, lambda sigs: native_group(*sigs))

    def submit_chord(self, members: Sequence[tuple[Task[Any, Any], Message]],
                     callback: tuple[Task[Any, Any], Message]) -> None:
        self._publish_canvas("a chord", [*members, callback], lambda sigs: native_chord(sigs[:-1], sigs[-1]))

    def _publish_canvas(self, what: str, parts: Sequence[tuple[Task[Any, Any], Message]],
                        build: Callable[[list[Any]], Any], extra: Sequence[dict[str, Any]] = ()) -> None:
        """Every part gets its record (QUEUED until Celery publishes and a worker starts it) and the same
        options as a plain submit; then Celery publishes the canvas (later links from the worker)."""
        subs = [self._submission(t, m) for t, m in parts]
        if extra:  # a chain: a later link's delay counts from its publish (as emulated), not from this submit
            for (t, _), (record, opts) in list(zip(parts, subs))[1:]:
                if t.options.delay and t.options.at is None:
                    record["eta"] = None
                    opts.pop("eta", None)
                    opts["countdown"] = t.options.delay
        store = self._store()
        with self._result_store(f"recording the submission of {what}"):
            for i, ((_, m), (record, _)) in enumerate(zip(parts, subs)):
                store.write(m.id, {**record, **(extra[i] if extra else {})}, self.ttl)
        sigs = [self.app.signature(t.name, args=list(m.args), kwargs=dict(m.kwargs), options=opts)
                for (t, m), (_, opts) in zip(parts, subs)]
        try:
            build(sigs).apply_async()
        except BaseException as exc:
            self._publish_failed(what, parts[0][1].queue, [m.id for _, m in parts], exc)

    def _cancel_chain_rest(self, task_id: str) -> None:
        """A chain link was cancelled: Celery never publishes the later links (and propagates only FAILURE
        to them), so their records turn CANCELLED instead of reading QUEUED for ever."""
        with self._result_store("cancelling the rest of a chain"):
            rest = (self._store().read(task_id) or {}).get("chain_rest") or []
            for later in rest:
                self._store().write(later, {"cancelled": f"not run: chain link {task_id} was cancelled",
                                            "finished_at": time.time()}, self.ttl)
    # -- end canvas --

    def _no_priority_queue(self, queue: str, exc: BaseException) -> ConfigurationError:
        return ConfigurationError(
            f"RabbitMQ refused to declare queue {queue!r} at {mask(self.url.raw)} ({exc}): it exists with other "
            f"arguments, typically declared without x-max-priority by an older anytask or a plain Celery app. "
            f"anytask declares its Celery queues with x-max-priority={MAX_PRIORITY}; delete the queue once it is "
            f"drained (rabbitmqctl delete_queue {queue}) or use another prefix= in the URL")

    def _unique_key(self, key: str) -> str:
        return f"{self._store().prefix}unique:{key}"

    def claim_unique(self, key: str, task_id: str, ttl: float) -> str | None:
        with self._result_store("claiming a unique key"):
            return self._store().claim_unique(key, task_id, ttl)

    def release_unique(self, key: str, task_id: str) -> None:
        with self._result_store("releasing a unique key"):
            self._store().release_unique(key, task_id)

    def _on_ready(self, task_id: str, request: Any) -> None:
        """After a final state: result_ttl on Celery's meta and anytask's record, unique key as long."""
        opts = request_options(request) if request is not None else None
        if opts is not None and opts.get("result_ttl") is None and opts.get("unique_key") is None:
            return  # nothing to shorten: Celery's result_expires and the record's TTL both are self.ttl
        ttl, ukey = ("", "") if opts is None else (opts.get("result_ttl"), opts.get("unique_key"))
        args = [task_id, self._unique_key(""), int(self.ttl), "" if ttl is None else str(ttl),
                ukey or "", "1" if opts is None else "0"]
        try:
            self.redis.eval(_FINAL, 2, self._meta_key(task_id), self._store().key(task_id), *args)
        except redis.RedisError as exc:
            logger.warning("could not apply result_ttl to task %s: %r", task_id, exc)

    # -- cancel ----------------------------------------------------------------------------------
    def cancel(self, task_id: str) -> CancelResult:
        store = self._store()
        note = "cancelled before start"
        with self._result_store("cancelling a task"):
            decision = self.redis.eval(_CANCEL, 1, store.key(task_id), json.dumps(note), time.time())
        decision = decision.decode() if isinstance(decision, bytes) else str(decision)
        if decision == "before":
            with self._result_store("storing REVOKED"), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # Celery's setex under redis-py 8
                self.app.backend.mark_as_revoked(task_id, note)  # Celery's own tools see REVOKED
            try:  # workers holding the message (prefetched, eta) drop it without starting it
                self._revoke(task_id, terminate=False)
            except BrokerUnavailable as exc:  # the flag alone already stops every start
                logger.warning("revoke broadcast for %s not sent: %s", task_id, exc)
            self._cancel_chain_rest(task_id)  # canvas
            return CancelResult(task_id, CancelOutcome.CANCELLED_BEFORE_START, Status.CANCELLED, note=note)
        # Running (or a task without anytask's record): ask the worker to kill the pool child.
        self._revoke(task_id, terminate=True)
        deadline = time.monotonic() + max(5.0, self.connect_timeout)
        while True:
            res = self.get(task_id)
            if res.status is Status.CANCELLED:
                self._cancel_chain_rest(task_id)  # canvas
                return CancelResult(task_id, CancelOutcome.TERMINATED_WHILE_RUNNING, res.status, note=res.note)
            if res.finished:
                return CancelResult(task_id, CancelOutcome.ALREADY_FINISHED, res.status)
            if time.monotonic() >= deadline:
                return CancelResult(task_id, CancelOutcome.NOT_INTERRUPTIBLE, res.status,
                                    note="revoke(terminate=True) sent, but no worker stored REVOKED in time (a pool "
                                         "without terminate, e.g. solo or threads?): the task runs on")
            time.sleep(0.05)

    def _revoke(self, task_id: str, terminate: bool) -> None:
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=self.connect_timeout)
                self.app.control.revoke(task_id, terminate=terminate, signal="SIGTERM", connection=conn)
        except BROKER_ERRORS as exc:
            raise self._broker_error("revoking a task", exc) from None

    def _meta_key(self, task_id: str) -> str:
        key = self.app.backend.get_key_for_task(task_id)
        return key.decode() if isinstance(key, bytes) else str(key)

    def get(self, task_id: str) -> TaskResult:
        store = self._store()
        with self._result_store("reading task state"):
            pipe = self.redis.pipeline(transaction=False)
            pipe.get(self._meta_key(task_id))
            pipe.hgetall(store.key(task_id))
            raw_meta, raw_rec = pipe.execute()
        rec = {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in (raw_rec or {}).items()}
        # Raw JSON decode: the exception stays a dict, no class is imported on the client.
        meta = self.app.backend.decode(raw_meta) if raw_meta else None
        return self._result(task_id, meta, rec)

    def wait(self, task_id: str, timeout: float | None) -> TaskResult:
        """Wake on Celery's own result channel instead of polling.

        Celery's Redis backend PUBLISHes every state it stores on a channel named like the result key
        (that is what ``AsyncResult.get`` listens to). We subscribe to it, then re-read the key: nothing
        is consumed or forgotten, and no exception class is rebuilt on the client (``AsyncResult.get``
        would import the module named in the result).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._result_store("waiting for a result"):
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(self._meta_key(task_id))
                while True:
                    res = self.get(task_id)  # read after subscribing: no state change can slip between
                    if res.finished:
                        return res
                    left = 1.0 if deadline is None else deadline - time.monotonic()
                    if left <= 0:
                        raise ResultTimeout(f"task {task_id} not finished after {timeout}s "
                                            f"(status {res.status.value})")
                    pubsub.get_message(timeout=min(left, 1.0))  # any message: re-read the key
            finally:
                pubsub.close()

    async def await_(self, task_id: str, timeout: float | None) -> TaskResult:
        """``wait`` in a thread, in slices of at most 1 s so that a cancelled await leaves no thread behind
        for longer than that."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await asyncio.to_thread(self.wait, task_id, 1.0 if left is None else min(left, 1.0))
            except ResultTimeout as exc:
                if deadline is not None and time.monotonic() >= deadline:
                    status = str(exc).rpartition("(status ")[2].rstrip(")")
                    raise ResultTimeout(f"task {task_id} not finished after {timeout}s (status {status})") from None

    def _result(self, task_id: str, meta: dict[str, Any] | None, rec: dict[str, Any]) -> TaskResult:
        state = (meta or {}).get("status", "PENDING")
        base: dict[str, Any] = {
            "task_name": (meta or {}).get("name") or rec.get("task_name"),
            "enqueued_at": rec.get("enqueued_at"),
            "started_at": rec.get("started_at"),
            "progress": rec.get("progress"),
        }
        if rec.get("cancelled") is not None:  # cancelled before start: no attempt ever runs
            return TaskResult(id=task_id, status=Status.CANCELLED, attempts=rec.get("attempts", 0),
                              note=str(rec["cancelled"]), finished_at=rec.get("finished_at"), **base)
        if state == "STARTED" and rec and not rec.get("running"):
            # Celery stored STARTED for an attempt the worker did not run (rate limit: re-published with
            # an eta): the task waits again
            state = "PENDING"
        if state == "PENDING":
            if not rec:
                return TaskResult.unknown(task_id)
            eta = rec.get("eta")
            status = Status.SCHEDULED if eta is not None and eta > time.time() else Status.QUEUED
            return TaskResult(id=task_id, status=status, attempts=0, **base)
        assert meta is not None
        status = _STATES.get(state, Status.RUNNING)  # custom states (update_state) are a running task
        retries = meta.get("retries")
        attempts = retries + 1 if isinstance(retries, int) else rec.get("attempts")
        if status is Status.SUCCEEDED:
            return TaskResult(id=task_id, status=status, value=meta.get("result"), has_value=True, attempts=attempts,
                              finished_at=_timestamp(meta.get("date_done")), **base)
        if status in (Status.FAILED, Status.RETRYING):
            err = error_from_meta(meta.get("result"), meta.get("traceback"))
            return TaskResult(id=task_id, status=status, error=err, attempts=attempts,
                              finished_at=_timestamp(meta.get("date_done")) if status is Status.FAILED else None,
                              **base)
        if status is Status.CANCELLED:
            reason = error_from_meta(meta.get("result"), None).message  # TaskRevokedError(reason)
            return TaskResult(id=task_id, status=status, attempts=attempts, note=f"revoked: {reason or 'revoked'}",
                              finished_at=_timestamp(meta.get("date_done")), **base)
        return TaskResult(id=task_id, status=status, attempts=attempts, **base)

    def ping(self) -> None:
        with self._result_store("pinging the result store"):
            self.redis.ping()
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=self.connect_timeout)
        except BROKER_ERRORS as exc:
            raise self._broker_error("ping", exc) from None

    def close(self) -> None:
        try:
            self.app.close()
        finally:
            if self._redis is not None:
                self._redis.close()
                self._redis = None

    def _declare(self, queues: Sequence[str], purge: bool) -> None:
        """Declare ``queues`` as Celery does (x-max-priority on RabbitMQ), purge them if asked."""
        name = ""
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=self.connect_timeout)
                channel = conn.default_channel
                for q in queues:
                    name = self._queue(q)
                    self.app.amqp.queues[name](channel).declare()  # the same Queue Celery declares
                    if purge:
                        channel.queue_purge(name)
        except amqp.exceptions.PreconditionFailed as exc:
            raise self._no_priority_queue(name, exc) from None
        except BROKER_ERRORS as exc:
            raise self._broker_error("purging queues" if purge else "declaring queues", exc) from None

    def purge(self, queues: Sequence[str] = ("default",)) -> None:
        self._declare(queues, purge=True)
        with self._result_store("purging task records"):
            self._store().purge()

    # -- worker side ---------------------------------------------------------------------------
    def register(self, task: Task[Any, Any]) -> Any:
        """Register ``task`` natively (``celery inspect registered`` lists it under ``task.name``)."""
        adapter = self
        o = task.options

        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            req = self.request
            opts = request_options(req) or {}
            retries = int(opts.get("retries", o.retries))
            backoff = float(opts.get("retry_backoff", o.retry_backoff))
            attempt = req.retries + 1
            kind, detail = adapter._decisions.pop(req.id, ("run", None))  # see _on_prerun
            if kind == "error":  # the record could not be read or written: fail like any task error
                raise detail
            if kind == "cancelled":  # cancelled before start: never run; REVOKED replaces the STARTED just stored
                self.backend.mark_as_revoked(req.id, "cancelled before start", request=req)
                raise Ignore()
            if kind == "wait":  # over the rate limit: the same message again, later
                adapter.reschedule(self, detail)
                raise Ignore()
            store = adapter._store()

            def report(data: dict[str, Any]) -> None:
                store.write(req.id, {"progress": data}, adapter.ttl)

            ctx = execution.TaskContext(req.id, task.name, attempt, report_progress=report)
            try:
                with execution.task_context(ctx):
                    return execution.call(task, args, kwargs)
            except SoftTimeLimitExceeded as e:  # billiard raises it without a message
                exc: Exception = SoftTimeLimitExceeded(f"task exceeded its timeout of {req.soft_time_limit}s")
                exc = exc.with_traceback(e.__traceback__)
            except Exception as e:  # noqa: BLE001 - every task error is retried or stored
                exc = e
            if req.retries >= retries:
                raise exc
            adapter.retry(self, exc, countdown=backoff * 2 ** req.retries, max_retries=retries)

        run.__name__ = task.func.__name__
        run.__qualname__ = task.func.__qualname__
        run.__doc__ = task.func.__doc__
        run.__module__ = task.func.__module__
        # Time limits and retries travel with each message (Task.using() may change them per submit),
        # so the registration carries none; max_retries is what Celery's tooling shows.
        return self.app.task(run, name=task.name, bind=True, max_retries=o.retries, default_retry_delay=0,
                             queue=self._queue(o.queue), typing=False)

    def reschedule(self, native: Any, wait: float) -> None:
        """Re-publish the current message ``wait`` seconds later: same id, options, retries count.

        The record's eta was set by ``_on_prerun`` (so the task reads SCHEDULED); PENDING replaces the
        STARTED the tracer stored, then the copy is published (``signature_from_request`` is what
        ``Task.retry`` uses, without counting a retry).
        """
        req = native.request
        native.backend.store_result(req.id, None, states.PENDING, request=req)
        eta = datetime.now(UTC) + timedelta(seconds=wait)
        opts = request_options(req) or {}
        native.signature_from_request(req, eta=eta, priority=self.native_priority(opts.get("priority"))).apply_async()
        logger.info("Task %s[%s] over its rate limit: runs again in %.3fs", native.name, req.id, wait)

    def retry(self, native: Any, exc: Exception, countdown: float, max_retries: int) -> None:
        """Retry with ``Task.retry``, storing RETRY *before* the next attempt is published.

        Trap: ``raise self.retry(...)`` publishes the next attempt first and the tracer stores
        RETRY afterwards; a fast next attempt can finish in another child before that, and the late
        RETRY then overwrites its SUCCESS for good. So: store RETRY, publish with ``throw=False``
        (countdown explicit: None would mean default_retry_delay, 3 minutes), send Celery's
        task_retry signal, then raise Ignore so the tracer stores nothing more for this attempt.
        """
        req = native.request
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        native.backend.mark_as_retry(req.id, exc, tb, request=req)
        with broker_errors("clearing the running mark", self.result_url):  # a cancel now is a cancel before start
            self.redis.hdel(self._store().key(req.id), "running")
        try:
            reason = native.retry(exc=exc, countdown=countdown, max_retries=max_retries, throw=False)
        except Reject:  # the next attempt could not be published: this failure is final (not RETRY for ever)
            raise exc from None
        einfo = ExceptionInfo((type(exc), exc, exc.__traceback__)) if exc.__traceback__ else None
        signals.task_retry.send(sender=native, request=req, reason=reason, einfo=einfo)
        logger.info("Task %s[%s] retry in %ss: %r", native.name, req.id, countdown, exc)
        raise Ignore()

    def worker_argv(self, options: WorkerOptions) -> list[str]:
        queues = ",".join(self._queue(q) for q in options.queues)
        argv = ["worker", "--pool=prefork", f"--concurrency={options.concurrency}", "-Q", queues,
                "--loglevel=INFO", f"--hostname=anytask-{os.getpid()}@%h"]
        if options.config == "tuned":
            argv += ["--without-mingle", "--without-gossip", "--without-heartbeat", "--prefetch-multiplier=16"]
        elif options.config == "reliable":
            argv += ["--prefetch-multiplier=1"]
        elif options.config != "defaults":
            raise ConfigurationError(f"unknown worker config {options.config!r}: defaults, tuned or reliable")
        return argv + list(options.extra)

    def _on_prerun(self, sender: Any = None, task_id: str | None = None, task: Any = None, **_: Any) -> None:
        """task_prerun fires in the pool child before the tracer stores STARTED: decide here whether this
        attempt runs (the wrapper acts on the decision), so a RUNNING task always has started_at.

        A signal handler cannot stop the task (Celery logs its exceptions), hence the decision table.
        """
        if task is None or task_id is None or getattr(task, "app", None) is not self.app:
            return
        try:
            self._decisions[task_id] = self._decide(task_id, task.name, task.request)
        except Exception as exc:  # noqa: BLE001 - handed to the wrapper, which raises it
            self._decisions[task_id] = ("error", exc)

    def _decide(self, task_id: str, name: str, request: Any) -> tuple[str, Any]:
        store = self._store()
        key = store.key(task_id)
        opts = request_options(request) or {}
        rate = opts.get("rate_limit")
        with broker_errors("starting a task", self.result_url):
            if rate:
                if self.redis.hexists(key, "cancelled"):  # do not take a rate slot for a cancelled task
                    return ("cancelled", None)
                count, period = parse_rate(rate)
                limiter = RedisRateLimiter(self.redis, prefix=f"anytask:celery:{self.prefix}rate:", url=self.result_url)
                wait = limiter.acquire(name, count, period, f"{task_id}:{time.time()}")
                if wait > 0:
                    store.write(task_id, {"eta": time.time() + wait}, self.ttl)
                    return ("wait", wait)
            started = self.redis.eval(_START, 1, key, time.time(), request.retries + 1, int(self.ttl))
        return ("run", None) if started == 1 else ("cancelled", None)

    def native_beat(self, schedules: Sequence[Schedule]) -> Any:
        """``anytask worker --beat native``: celery beat embedded in the worker (anytask/adapters/celery_beat.py)."""
        from .celery_beat import CeleryNativeBeat

        return CeleryNativeBeat(self, schedules)

    def run_worker(self, tasks: Sequence[Task[Any, Any]], options: WorkerOptions) -> int:
        signals.task_prerun.connect(self._on_prerun, weak=False)  # inherited by the forked pool children
        # BRPOP waits 1 s per poll: give the worker's reads more slack
        self.app.conf.broker_transport_options = self._transport_options(max(self.connect_timeout, 10.0))
        # A task ending while Redis restarts keeps its end (issue 7): Celery's own switch retries the
        # result writes; each write already retries ~20 s (the Redis backend's retry_policy), so two
        # more attempts make about WORKER_PATIENCE s. A client never waits like this.
        self.app.conf.update(result_backend_always_retry=True, result_backend_max_retries=2)
        if options.config == "reliable":
            self.app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True)
            # delivery guard (issue 7): a message of a lost worker comes back; a poison one not for ever
            install_redis_guard(self.url, self.result_url, f"celery:{self.prefix}", self.connect_timeout)
        for t in tasks:
            self.register(t)
        if self.url.transport == "amqp":  # a queue declared without x-max-priority: say so before Celery crashes
            self._declare(options.queues, purge=False)
        code = self.app.start(self.worker_argv(options))  # ``celery worker`` in this process
        return int(code or 0)

    # -- describe_worker (benchmark harness, issue 4) --
    def describe_worker(self, options: WorkerOptions) -> dict[str, Any]:
        n = options.concurrency
        return {"pool": f"prefork x{n}", "processes": n, "threads": 1, "slots": n, "config": options.config,
                "knobs": {"argv": ["celery", *self.worker_argv(options)]}}
