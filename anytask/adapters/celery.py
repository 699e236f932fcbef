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
no start time). See docs/adapters/celery.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import amqp.exceptions  # type: ignore[import-untyped]
import redis
from billiard.einfo import ExceptionInfo  # type: ignore[import-untyped]
from celery import Celery, signals  # type: ignore[import-untyped]
from celery.exceptions import Ignore, Reject, SoftTimeLimitExceeded  # type: ignore[import-untyped]
from celery.utils.log import get_task_logger  # type: ignore[import-untyped]
from kombu.exceptions import OperationalError

from ..facade import execution
from ..facade.adapter import Adapter, WorkerOptions
from ..facade.capabilities import Capabilities, Feature, emulated, native, unsupported
from ..facade.errors import BrokerUnavailable, ConfigurationError, ResultTimeout
from ..facade.records import ErrorInfo, Message, TaskResult
from ..facade.state import DEFAULT_TTL
from ..facade.status import Status
from ..facade.task import Task
from ..facade.url import BackendURL, mask
from ._redis_state import RedisStateStore, broker_errors

DEFAULT_RESULT_URL = "redis://127.0.0.1:6379/0"
logger = get_task_logger("anytask.adapters.celery")
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

    def _get_backend(self) -> Any:
        backend = super()._get_backend()
        backend.on_task_call = lambda producer, task_id: None
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
            Feature.PRIORITY: unsupported("not wired in anytask yet; Celery has the priority= option "
                                          "(x-max-priority queues on RabbitMQ, priority_steps on Redis)"),
            Feature.CANCEL: unsupported("not wired in anytask yet; Celery has control.revoke(terminate=...)"),
            Feature.PROGRESS: unsupported("not wired in anytask yet; Celery has Task.update_state(meta=...)"),
            Feature.CHAIN: unsupported("not wired in anytask yet; Celery has celery.chain"),
            Feature.GROUP: unsupported("not wired in anytask yet; Celery has celery.group"),
            Feature.CHORD: unsupported("not wired in anytask yet; Celery has celery.chord"),
            Feature.RATE_LIMIT: unsupported("not wired in anytask yet; Celery has the rate_limit task option "
                                            "(per worker)"),
            Feature.UNIQUE: unsupported("not wired in anytask yet; Celery has no uniqueness (only a lock "
                                        "pattern built on the result backend)"),
            Feature.RESULT_TTL: unsupported("not wired in anytask yet; Celery has result_expires (per app)"),
            Feature.PERIODIC: unsupported("not wired in anytask yet; Celery has celery beat"),
        },
        needs_worker=True,
        delivery="at-least-once with acks_late (config 'reliable'); default acks early = at-most-once",
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
            broker_transport_options=({"socket_connect_timeout": ct, "socket_timeout": ct}
                                      if self.url.transport == "redis" else {}),
            redis_socket_connect_timeout=ct,
            redis_socket_timeout=max(ct, 5.0),
            redis_retry_on_timeout=False,
            worker_hijack_root_logger=False,
            worker_redirect_stdouts=False,
        )
        return app

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
        return BrokerUnavailable(f"{what}: the Celery broker at {mask(self.url.raw)} did not answer ({exc}); is "
                                 "it running? Check the URL or start one with 'anytask brokers up'")

    # -- producer side -----------------------------------------------------------------------
    def submit(self, task: Task[Any, Any], message: Message) -> None:
        o = task.options
        eta = message.options.get("eta")
        store = self._store()
        with self._result_store(f"recording the submission of {task.name}"):
            store.write(message.id, {"task_name": task.name, "enqueued_at": message.enqueued_at, "eta": eta},
                        self.ttl)
        opts: dict[str, Any] = {
            "task_id": message.id,
            "queue": self._queue(message.queue),
            "headers": {HEADER: {"retries": o.retries, "retry_backoff": o.retry_backoff}},
        }
        if eta is not None:
            opts["eta"] = datetime.fromtimestamp(eta, tz=UTC)
        if o.timeout is not None:
            opts["soft_time_limit"] = o.timeout
            opts["time_limit"] = hard_limit(o.timeout)
        try:
            self.app.send_task(task.name, args=list(message.args), kwargs=dict(message.kwargs), **opts)
        except BaseException as exc:
            try:  # nothing half-written: the record goes with the failed publish
                with self._result_store("deleting the submission record"):
                    store.delete(message.id)
            except BrokerUnavailable:
                pass
            if isinstance(exc, BROKER_ERRORS):
                raise self._broker_error(f"submitting {task.name}", exc) from None
            raise

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
        }
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
            return TaskResult(id=task_id, status=status, attempts=attempts, note="revoked",
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

    def purge(self, queues: Sequence[str] = ("default",)) -> None:
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=self.connect_timeout)
                channel = conn.default_channel
                for q in queues:
                    name = self._queue(q)
                    self.app.amqp.queues[name](channel).declare()  # the same Queue Celery declares
                    channel.queue_purge(name)
        except BROKER_ERRORS as exc:
            raise self._broker_error("purging queues", exc) from None
        with self._result_store("purging task records"):
            self._store().purge()

    # -- worker side ---------------------------------------------------------------------------
    def register(self, task: Task[Any, Any]) -> Any:
        """Register ``task`` natively (``celery inspect registered`` lists it under ``task.name``)."""
        adapter = self
        o = task.options

        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            req = self.request
            opts = (req.headers or {}).get(HEADER) or {}
            retries = int(opts.get("retries", o.retries))
            backoff = float(opts.get("retry_backoff", o.retry_backoff))
            attempt = req.retries + 1
            ctx = execution.TaskContext(req.id, task.name, attempt)
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

    @staticmethod
    def retry(native: Any, exc: Exception, countdown: float, max_retries: int) -> None:
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
        """task_prerun fires before the tracer stores STARTED: a RUNNING task always has started_at."""
        if task is None or task_id is None or getattr(task, "app", None) is not self.app:
            return
        self._store().write(task_id, {"started_at": time.time(), "attempts": task.request.retries + 1}, self.ttl)

    def run_worker(self, tasks: Sequence[Task[Any, Any]], options: WorkerOptions) -> int:
        signals.task_prerun.connect(self._on_prerun, weak=False)  # inherited by the forked pool children
        if self.url.transport == "redis":  # BRPOP waits 1 s per poll: give the worker's reads more slack
            self.app.conf.broker_transport_options = {"socket_connect_timeout": self.connect_timeout,
                                                      "socket_timeout": max(self.connect_timeout, 10.0)}
        if options.config == "reliable":
            self.app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True)
        for t in tasks:
            self.register(t)
        code = self.app.start(self.worker_argv(options))  # ``celery worker`` in this process
        return int(code or 0)
