"""``huey+sqlite:///tasks.db`` and ``huey+redis://host:port/db``: Huey 3.x through anytask.

* One Huey instance per anytask queue (``name=<prefix><queue>``); the worker runs Huey's own
  consumer (:class:`huey.consumer.Consumer`, what ``huey_consumer`` runs) in-process.
* The wire format is JSON (:class:`JSONSerializer`), never pickle; Huey's default is pickle.
* Huey keeps no task states: they are recorded through Huey's own hooks (the EXECUTING /
  ENQUEUED / INTERRUPTED signals and a post-execute hook) into a record per task id kept in
  Huey's own storage (:class:`HueyStateStore`), the same way for SQLite and Redis.

See docs/adapters/huey.md for the state mapping, the traps and the worker configurations.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import sqlite3
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from huey import RedisExpireHuey, SqliteHuey
from huey import signals as S
from huey.api import Huey
from huey.constants import EmptyData
from huey.exceptions import HueyException
from huey.consumer_options import ConsumerConfig, OptionParserHandler
from huey.registry import Message as HueyMessage
from huey.registry import Registry
from huey.serializer import Serializer
from huey.storage import BaseStorage, RedisExpireStorage, SqliteStorage
from huey.utils import Error as HueyError

from ..facade import execution
from ..facade.adapter import Adapter, WorkerOptions
from ..facade.capabilities import Capabilities, Feature, emulated, native, unsupported
from ..facade.errors import BrokerUnavailable, ConfigurationError, TaskNotRegistered
from ..facade.records import ErrorInfo, Message, TaskResult
from ..facade.state import DEFAULT_TTL, Recorder
from ..facade.status import Status
from ..facade.task import Task
from ..facade.url import BackendURL, mask

try:  # redis-py is only needed (and only installed) for huey+redis
    import redis
except ImportError:  # pragma: no cover - huey+sqlite without redis-py
    redis = None  # type: ignore[assignment]

log = logging.getLogger("anytask.huey")

STATE_NAME = "anytask:state"  # ':' is not allowed in queue names, so no queue can collide with it

# -- JSON on the wire ----------------------------------------------------------------------------

_DT, _TD = "huey.datetime", "huey.timedelta"


def _tag(value: Any) -> Any:
    """Huey's own (non-user) values: datetimes, timedeltas, tuples, nested messages and errors."""
    if isinstance(value, HueyMessage):
        return {"message": _encode_message(value)}
    if isinstance(value, HueyError):
        return {"error": _tag(value.metadata)}
    if isinstance(value, datetime.datetime):
        return {_DT: value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {_TD: value.total_seconds()}
    if isinstance(value, (list, tuple)):
        return [_tag(v) for v in value]
    if isinstance(value, dict):
        return {k: _tag(v) for k, v in value.items()}
    return value


def _untag(value: Any) -> Any:
    if isinstance(value, list):
        return [_untag(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            (key, inner), = value.items()
            if key == _DT:
                return datetime.datetime.fromisoformat(inner)
            if key == _TD:
                return datetime.timedelta(seconds=inner)
            if key == "message":
                return _decode_message(inner)
            if key == "error":
                return HueyError(_untag(inner))
        return {k: _untag(v) for k, v in value.items()}
    return value


def _encode_message(msg: HueyMessage) -> dict[str, Any]:
    # args/kwargs are user data (already checked to be JSON): kept plain, never tagged.
    out = {f: _tag(getattr(msg, f)) for f in HueyMessage._fields if f not in ("args", "kwargs")}
    out["args"] = list(msg.args or ())
    out["kwargs"] = dict(msg.kwargs or {})
    return out


def _decode_message(data: dict[str, Any]) -> HueyMessage:
    fields = {f: _untag(data.get(f)) for f in HueyMessage._fields if f not in ("args", "kwargs")}
    if fields.get("chord_config") is not None:
        fields["chord_config"] = tuple(fields["chord_config"])
    return HueyMessage(args=tuple(data.get("args") or ()), kwargs=dict(data.get("kwargs") or {}), **fields)


def _has_huey_types(value: Any) -> bool:
    if isinstance(value, (HueyMessage, HueyError, datetime.datetime, datetime.timedelta)):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_huey_types(v) for v in value)
    if isinstance(value, dict):
        return any(_has_huey_types(v) for v in value.values())
    return False


class JSONSerializer(Serializer):
    """Everything Huey stores, as one JSON object with a single key saying what it is.

    ``{"message": {...}}`` a task message (Huey's Message tuple: id, name, eta, retries, retry_delay,
    priority, args, kwargs, on_complete, on_error, expires, expires_resolved, timeout, chord_config,
    retry_backoff; datetimes as ``{"huey.datetime": iso}``), ``{"error": {...}}`` the Error Huey
    stores for a failed task, ``{"value": v}`` a task result (plain JSON, never interpreted), and
    ``{"huey": v}`` Huey's internal values holding datetimes (revocations, chord data).
    """

    def _serialize(self, data: Any) -> bytes:
        if isinstance(data, HueyMessage):
            doc: dict[str, Any] = {"message": _encode_message(data)}
        elif isinstance(data, HueyError):
            doc = {"error": _tag(data.metadata)}
        elif _has_huey_types(data):
            doc = {"huey": _tag(data)}
        else:
            doc = {"value": data}
        try:
            return json.dumps(doc, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"anytask's Huey serializer sends only JSON: {exc}") from None

    def _deserialize(self, data: bytes) -> Any:
        doc = json.loads(bytes(data))
        (kind, inner), = doc.items()
        if kind == "message":
            return _decode_message(inner)
        if kind == "error":
            return HueyError(_untag(inner))
        if kind == "huey":
            return _untag(inner)
        return inner


# -- states in Huey's storage ----------------------------------------------------------------------


class HueyStateStore:
    """One JSON record per task id in a Huey storage (``put_data`` / ``peek_data``: never pops).

    SQLite: a row of Huey's ``kv`` table (queue ``anytask:state``). Redis: a key
    ``huey.r.anytask:state.<id>`` with the TTL of the records (RedisExpireStorage).
    """

    def __init__(self, storage: BaseStorage) -> None:
        self.storage = storage

    def read(self, task_id: str) -> dict[str, Any] | None:
        raw = self.storage.peek_data(task_id)
        return None if raw is EmptyData else json.loads(bytes(raw))

    def write(self, task_id: str, fields: dict[str, Any], ttl: float | None) -> None:
        # Read-merge-write: the writes of one task are sequential (client before enqueue, then the
        # one worker that runs it), so no two writers race on a record.
        rec = self.read(task_id) or {}
        rec.update(fields)
        self.storage.put_data(task_id, json.dumps(rec, separators=(",", ":")).encode(), is_result=True)

    def delete(self, task_id: str) -> None:
        self.storage.delete_data(task_id)

    def purge(self) -> None:
        self.storage.flush_results()


class _Registry(Registry):
    """Huey names a task ``<module>.<class name>``; anytask's name is used verbatim instead."""

    def task_to_string(self, task_class: Any) -> str:
        return getattr(task_class, "anytask_name", None) or super().task_to_string(task_class)


class HueyAdapter(Adapter):
    capabilities = Capabilities(
        features={
            Feature.RETRIES: native("huey task retries= / retry_delay= (retry_backoff seconds, doubled per "
                                    "retry via Huey's retry_backoff=2); delayed retries go through the "
                                    "consumer's scheduler (1 s granularity)"),
            Feature.TIMEOUT: native("huey task timeout=, enforced by the consumer's process workers with "
                                    "SIGALRM (TaskTimeout); anytask runs process workers for that reason "
                                    "(Huey's thread workers only check timeouts cooperatively)"),
            Feature.QUEUES: native("one Huey instance per queue (name=<prefix><queue>); a worker consumes "
                                   "exactly one queue (Huey's consumer serves one instance)"),
            Feature.ASYNC_TASKS: emulated("Huey 3.5 refuses async def tasks (ConfigurationError); the registered "
                                          "sync function runs the coroutine with asyncio.run in the worker"),
            Feature.DELAY: native("Huey eta: the message waits in the consumer's schedule (SCHEDULED) and the "
                                  "scheduler enqueues it when due (1 s granularity)"),
            Feature.PRIORITY: unsupported("not wired in anytask yet; the library has priority= on SQLite and "
                                          "PriorityRedisHuey"),
            Feature.CANCEL: unsupported("not wired in anytask yet; the library has revoke_by_id()"),
            Feature.PROGRESS: unsupported("not wired in anytask yet; the library has no progress API "
                                          "(would be recorded in the state record)"),
            Feature.CHAIN: unsupported("not wired in anytask yet; the library has task.then() pipelines"),
            Feature.GROUP: unsupported("not wired in anytask yet; the library has group()"),
            Feature.CHORD: unsupported("not wired in anytask yet; the library has chord()"),
            Feature.RATE_LIMIT: unsupported("not wired in anytask yet; the library has huey.rate_limit()"),
            Feature.UNIQUE: unsupported("not wired in anytask yet; the library has huey.lock_task()"),
            Feature.RESULT_TTL: unsupported("not wired in anytask yet; the library has RedisExpireHuey "
                                            "expire_time (Redis only)"),
            Feature.PERIODIC: unsupported("not wired in anytask yet; the library has periodic_task(crontab)"),
        },
        needs_worker=True,
        delivery="at-most-once (Huey removes a message when a worker takes it; a killed worker loses it)",
        brokers=("sqlite", "redis"),
    )

    def __init__(self, url: BackendURL) -> None:
        super().__init__(url)
        if url.transport not in ("sqlite", "redis"):
            raise ConfigurationError(f"huey backends are huey+sqlite:// and huey+redis://, not {url.masked!r}")
        self.prefix = url.params.get("prefix", "")
        self.ttl = DEFAULT_TTL
        self._lock = threading.RLock()
        self._hueys: dict[str, Huey] = {}
        self._registered: set[tuple[str, str]] = set()
        self._state_storage: BaseStorage | None = None
        self._pool: Any = None
        self._local = threading.local()
        self.recorder = Recorder(HueyStateStore(_LazyStorage(self)), ttl=self.ttl)
        if url.transport == "sqlite":
            self.filename = self._sqlite_path(url)
            try:
                self.busy_timeout = float(url.params.get("timeout", 5.0))
            except ValueError:
                raise ConfigurationError(f"timeout={url.params['timeout']!r} must be seconds") from None

    # -- connections -------------------------------------------------------------------------
    @staticmethod
    def _sqlite_path(url: BackendURL) -> str:
        # Like file:// URLs: huey+sqlite:///abs/tasks.db is absolute (so is ////abs/tasks.db), and
        # huey+sqlite://rel/tasks.db is relative to the working directory of each process.
        parts = urlsplit(url.broker_url)
        if parts.netloc:
            path = os.path.abspath(parts.netloc + parts.path)
        else:
            path = "/" + parts.path.lstrip("/") if parts.path.strip("/") else ""
        if not path:
            raise ConfigurationError(f"{url.masked!r} names no SQLite file; e.g. huey+sqlite:///var/lib/app/tasks.db "
                                     "(absolute) or huey+sqlite://tasks.db (relative to the working directory)")
        return path

    def _redis_pool(self) -> Any:
        if self._pool is None:
            t = self.connect_timeout
            # No redis-py retries: a dead broker answers within the connect timeout.
            self._pool = redis.ConnectionPool.from_url(self.url.broker_url, socket_connect_timeout=t,
                                                       socket_timeout=max(t, 5.0), health_check_interval=30)
        return self._pool

    def _new_storage_kwargs(self) -> dict[str, Any]:
        if self.url.transport == "sqlite":
            os.makedirs(os.path.dirname(self.filename) or ".", exist_ok=True)
            return {"filename": self.filename, "timeout": self.busy_timeout}
        # clean_name=False: Huey would strip '.' and '-' from names, so "a.b" and "ab" would share a queue.
        return {"connection_pool": self._redis_pool(), "expire_time": int(self.ttl), "clean_name": False}

    def state_storage(self) -> BaseStorage:
        with self._lock:
            if self._state_storage is None:
                name = self.prefix + STATE_NAME
                with self._errors("opening the state store"):
                    if self.url.transport == "sqlite":
                        self._state_storage = SqliteStorage(name, **self._new_storage_kwargs())
                    else:
                        self._state_storage = RedisExpireStorage(name, **self._new_storage_kwargs())
            return self._state_storage

    def huey(self, queue: str) -> Huey:
        """The Huey instance of an anytask queue (created once per adapter)."""
        with self._lock:
            h = self._hueys.get(queue)
            if h is None:
                cls = SqliteHuey if self.url.transport == "sqlite" else RedisExpireHuey
                with self._errors(f"opening queue {queue!r}"):
                    h = cls(self.prefix + queue, results=True, store_none=True, utc=True,
                            serializer=JSONSerializer(), **self._new_storage_kwargs())
                h._registry = _Registry()
                self._hueys[queue] = h
            return h

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            if self.url.transport != "sqlite":
                raise
            raise BrokerUnavailable(f"{what}: the SQLite file of {self.url.masked} is not usable ({exc})") from None
        except Exception as exc:
            if redis is not None and isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
                raise BrokerUnavailable(f"{what}: Redis at {self.url.masked} did not answer ({mask(str(exc))}); "
                                        "is it running? Check the URL") from None
            if redis is not None and isinstance(exc, redis.exceptions.InvalidResponse):
                raise BrokerUnavailable(f"{what}: something that is not Redis answered at {self.url.masked} "
                                        f"({mask(str(exc))}); check the host and port") from None
            raise

    # -- registration ------------------------------------------------------------------------------
    def _register(self, h: Huey, task: Task[Any, Any], func: Any = None) -> Any:
        """Register ``task`` with Huey under ``task.name`` (visible in Huey's registry and logs)."""
        key = (h.name, task.name)
        with self._lock:
            if key in self._registered:
                if func is None:
                    return h._registry.string_to_task(task.name)
                h._registry.unregister(h._registry.string_to_task(task.name))  # worker: replace the placeholder
            module, _, cls_name = task.name.rpartition(".")
            o = task.options

            def placeholder(*args: Any, **kwargs: Any) -> Any:  # producer side: never executed
                raise RuntimeError(f"{task.name} runs in the anytask worker, not here")

            fn = func or placeholder
            fn.__module__ = task.func.__module__
            wrapper = h.task(name=cls_name or task.name, retries=o.retries, retry_delay=o.retry_backoff,
                             retry_backoff=2 if o.retry_backoff else 0, timeout=o.timeout,
                             anytask_name=task.name, **{"__module__": module or task.func.__module__})(fn)
            self._registered.add(key)
            return wrapper.task_class

    # -- producer ----------------------------------------------------------------------------------
    def submit(self, task: Task[Any, Any], message: Message) -> None:
        o = task.options
        eta = message.options.get("eta")
        eta_dt = None
        if eta is not None:  # Huey (utc=True) keeps naive UTC datetimes
            eta_dt = datetime.datetime.fromtimestamp(eta, datetime.timezone.utc).replace(tzinfo=None)
        h = self.huey(message.queue)
        task_class = self._register(h, task)
        # Built directly (not via .s()), so user kwargs named id/retries/timeout/... stay user kwargs.
        # timeout=0 is Huey's "no limit" (None would fall back to the registered default).
        htask = task_class(message.args, message.kwargs, id=message.id, eta=eta_dt, retries=o.retries,
                           retry_delay=o.retry_backoff, retry_backoff=2 if o.retry_backoff else 0,
                           timeout=o.timeout or 0)
        with self._errors(f"submitting {task.name}"):
            self.recorder.submitted(message.id, task.name, scheduled=eta is not None,
                                    enqueued_at=message.enqueued_at)
            try:
                h.enqueue(htask)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.recorder.forget(message.id)
                raise

    def get(self, task_id: str) -> TaskResult:
        with self._errors(f"reading task {task_id}"):
            return self.recorder.read(task_id)

    def ping(self) -> None:
        with self._errors("ping"):
            self.state_storage().peek_data("anytask:ping")
            if self._pool is not None:
                redis.Redis(connection_pool=self._pool).ping()

    def purge(self, queues: Sequence[str] = ("default",)) -> None:
        with self._errors("purging"):
            for q in queues:
                s = self.huey(q).storage
                s.flush_queue()
                s.flush_schedule()
                s.flush_results()
            HueyStateStore(self.state_storage()).purge()

    def close(self) -> None:
        with self._lock:
            for h in self._hueys.values():
                with contextlib.suppress(Exception):
                    h.storage.close()
            if self._state_storage is not None:
                with contextlib.suppress(Exception):
                    self._state_storage.close()
            self._hueys.clear()
            self._registered.clear()
            self._state_storage = None
            if self._pool is not None:
                self._pool.disconnect()
                self._pool = None

    # -- worker ------------------------------------------------------------------------------------
    def _native_function(self, task: Task[Any, Any]) -> Any:
        local = self._local

        def run(*args: Any, **kwargs: Any) -> Any:
            htask = getattr(local, "task", None)
            ctx = execution.TaskContext(htask.id if htask else "", task.name, getattr(local, "attempt", 1))
            with execution.task_context(ctx):
                return execution.call(task, args, kwargs)

        run.__name__ = run.__qualname__ = task.func.__name__
        run.__doc__ = task.func.__doc__
        return run

    def _connect_hooks(self, h: Huey) -> None:
        rec = self.recorder
        local = self._local

        @h.signal(S.SIGNAL_EXECUTING)
        def executing(signal: str, htask: Any, *a: Any) -> None:
            prev = rec.store.read(htask.id) or {}
            local.task, local.attempt = htask, int(prev.get("attempts") or 0) + 1
            rec.started(htask.id, local.attempt)

        @h.signal(S.SIGNAL_ENQUEUED)
        def enqueued(signal: str, htask: Any, *a: Any) -> None:
            # The scheduler moves a due task from the schedule to the queue: SCHEDULED -> QUEUED.
            # (A pending retry stays RETRYING.)
            if htask.eta is not None and (rec.store.read(htask.id) or {}).get("status") == Status.SCHEDULED.value:
                rec.store.write(htask.id, {"status": Status.QUEUED.value}, rec.ttl)

        @h.signal(S.SIGNAL_INTERRUPTED)
        def interrupted(signal: str, htask: Any, *a: Any) -> None:
            rec.failed(htask.id, ErrorInfo("anytask.WorkerInterrupted",
                                           "the Huey consumer was stopped while the task ran; Huey does "
                                           "not run an interrupted task again"), will_retry=False)

        def deserialize_task(data: bytes) -> Any:
            # Huey drops (and only logs) a message naming a task this worker does not know: the task
            # would stay QUEUED for ever. Record it FAILED with the reason instead.
            message = h.serializer.deserialize(data)
            try:
                return h._registry.create_task(message)
            except HueyException:
                exc = TaskNotRegistered(f"task {message.name!r} is not registered in the worker of Huey queue "
                                        f"{h.name!r}; start the worker with --tasks naming the module that defines it")
                rec.failed(message.id, ErrorInfo.from_exception(exc), will_retry=False)
                raise

        h.deserialize_task = deserialize_task  # used by Huey's dequeue() and its scheduler

        @h.post_execute("anytask_record_outcome")
        def outcome(htask: Any, value: Any, exc: BaseException | None) -> None:
            # Called for every outcome (also TaskTimeout), after Huey stored its own result and before
            # it re-queues a retry; ``htask.retries`` is the number of retries still allowed.
            local.task = None
            if exc is None:
                rec.succeeded(htask.id, value)
            else:
                rec.failed(htask.id, ErrorInfo.from_exception(exc), will_retry=bool(htask.retries))

    def consumer_config(self, options: WorkerOptions) -> ConsumerConfig:
        """huey_consumer's settings for a named configuration, then ``options.extra`` (huey_consumer flags)."""
        presets: dict[str, dict[str, Any]] = {
            # Huey's defaults, except process workers: only they enforce task timeouts (SIGALRM).
            "defaults": {},
            # Pick up work sooner on polling storages (SQLite): huey_consumer -d 0.05 -m 1.0.
            "tuned": {"initial_delay": 0.05, "max_delay": 1.0},
            # SIGTERM waits for running tasks (huey_consumer -g TERM); dead workers replaced within 1 s (-c 1).
            "reliable": {"graceful_signal": "TERM", "health_check_interval": 1},
        }
        if options.config not in presets:
            raise ConfigurationError(f"unknown worker config {options.config!r}; use defaults, tuned or reliable")
        values: dict[str, Any] = {"workers": options.concurrency, "worker_type": "process", **presets[options.config]}
        if options.extra:
            parser = OptionParserHandler().get_option_parser()
            parser.prog = "anytask worker ... --"
            parsed, rest = parser.parse_args(list(options.extra))
            if rest:
                raise ConfigurationError(f"unexpected huey_consumer arguments {rest}: the Huey instance is "
                                         "built by anytask from the URL")
            values.update({k: v for k, v in vars(parsed).items() if v is not None})
        config = ConsumerConfig(**values)
        try:
            config.validate()
        except ValueError as exc:
            raise ConfigurationError(f"huey consumer options: {exc}") from None
        return config

    def run_worker(self, tasks: Sequence[Task[Any, Any]], options: WorkerOptions) -> int:
        if len(options.queues) != 1:
            raise ConfigurationError(
                f"a Huey consumer serves one Huey instance, i.e. one queue; got --queues {','.join(options.queues)}. "
                "Start one worker per queue (e.g. --queues default and --queues emails)")
        config = self.consumer_config(options)
        queue = options.queues[0]
        h = self.huey(queue)
        for t in tasks:
            self._register(h, t, self._native_function(t))
        self._connect_hooks(h)
        if config.logfile or config.verbose is not None or config.simple_log:
            config.setup_logger(logging.getLogger("huey"))
        if config.worker_type != "process":
            log.warning("huey %s workers do not enforce task timeouts (only process workers do, with SIGALRM)",
                        config.worker_type)
        with self._errors(f"starting the Huey consumer of queue {queue!r}"):
            self.state_storage().peek_data("anytask:ping")  # fail fast if the storage is unreachable
            consumer = h.create_consumer(**config.values)
            # Forked workers must not share the parent's SQLite connections: the consumer closes the
            # queue's storage before forking; close the state store's too (reopened lazily per process).
            if self._state_storage is not None:
                self._state_storage.close()
            if sys.argv and sys.argv[0].endswith(os.path.join("anytask", "__main__.py")):
                # SIGHUP makes the consumer re-exec sys.argv; "python -m anytask" must stay a -m run.
                sys.argv[:] = ["-m", "anytask", *sys.argv[1:]]
            log.info("huey consumer for queue %r (%s) on %s: %d %s worker(s), config %s", queue, h.name,
                     self.url.masked, config.workers, config.worker_type, options.config)
            consumer.run()
        return 0


class _LazyStorage:
    """Defers opening the state storage to first use (and after a close, e.g. in forked workers)."""

    def __init__(self, adapter: HueyAdapter) -> None:
        self._adapter = adapter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter.state_storage(), name)
