"""``huey+sqlite:///tasks.db`` and ``huey+redis://host:port/db``: Huey 3.x through anytask.

* One Huey instance per anytask queue (``name=<prefix><queue>``); the worker runs Huey's own
  consumer (:class:`huey.consumer.Consumer`, what ``huey_consumer`` runs) in-process.
* The wire format is JSON (:class:`JSONSerializer`), never pickle; Huey's default is pickle.
* Huey keeps no task states: they are recorded through Huey's own hooks (a pre-execute hook, the
  ENQUEUED / REVOKED / INTERRUPTED signals and a post-execute hook) into a record per task id kept
  in Huey's own storage (:class:`HueyStateStore`), the same way for SQLite and Redis.
* Priority is Huey's (PriorityRedisExpireHuey on Redis); cancel is Huey's revocation plus an atomic
  record update; rate limits, unique keys, result TTLs and progress live in the same storage.

See docs/adapters/huey.md for the state mapping, the traps and the worker configurations.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from huey import PriorityRedisExpireHuey, SqliteHuey
from huey import signals as S
from huey.api import Huey
from huey.constants import EmptyData
from huey.exceptions import CancelExecution, HueyException, RetryTask
from huey.consumer_options import ConsumerConfig, OptionParserHandler
from huey.registry import Message as HueyMessage
from huey.registry import Registry
from huey.serializer import Serializer
from huey.storage import BaseStorage, RedisExpireStorage, SqliteStorage
from huey.utils import Error as HueyError

from ..facade import execution
from ..facade.adapter import Adapter, WorkerOptions
from ..facade.beat import emulated_how
from ..facade.schedule import Schedule  # --beat native (native_beat)
from ..facade.capabilities import Capabilities, Feature, emulated, native, unsupported
from ..facade.continuation import emulated_canvas, serve_canvas
from ..facade.errors import BrokerUnavailable, ConfigurationError, TaskNotRegistered, UnknownTaskId, credentials_refused
from ..facade.records import CancelOutcome, CancelResult, ErrorInfo, Message, TaskResult
from ..facade.patience import WORKER_PATIENCE
from ..facade.state import DEFAULT_TTL, Recorder
from ..facade.status import Status
from ..facade.task import Task, parse_rate
from ..facade.url import BackendURL, mask

try:  # redis-py is only needed (and only installed) for huey+redis
    import redis
except ImportError:  # pragma: no cover - huey+sqlite without redis-py
    redis = None  # type: ignore[assignment]

log = logging.getLogger("anytask.huey")

# what a state-store write may raise when the storage is unreachable or locked
_STORE_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
if redis is not None:
    _STORE_ERRORS += (redis.RedisError,)

STATE_NAME = "anytask:state"  # ':' is not allowed in queue names, so no queue can collide with it
# A cancel before start may still win from these (the worker's start moves the record to RUNNING).
_CANCELLABLE = frozenset({"QUEUED", "SCHEDULED", "RETRYING"})
# Worker liveness: each process that runs tasks keeps a beat under this key prefix of the state store
# (task ids are uuid hex, so no record can collide). A RUNNING record names its worker; a worker
# whose beat is older than ``worker_liveness`` seconds is lost, and so is the task (Huey is at-most-once).
_ALIVE = "alive:"
DEFAULT_LIVENESS = 30.0  # seconds (URL parameter worker_liveness); a worker beats every liveness / 6
_BEATS_PER_TIMEOUT = 6


def _beat_keep(liveness: float) -> float:
    """How long a beat is kept after the last one: long enough for a reader to say since when."""
    return max(3600.0, 10 * liveness)


def _split_worker(worker: str) -> tuple[str, str, str]:
    """``<host>:<pid>:<start time>`` -> (host, pid, start time)."""
    parts = worker.rsplit(":", 2)
    if len(parts) != 3:
        return worker, "?", "?"
    return parts[0], parts[1], parts[2]


def _utc(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")

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

_FINAL = frozenset(s.value for s in Status if s.finished)


class HueyStateStore:
    """One JSON record per task id in a Huey storage (never popped), plus unique keys and rate windows.

    SQLite: a row of Huey's ``kv`` table (queue ``<prefix>anytask:state``). Redis: a key
    ``huey.r.<prefix>anytask:state.<id>`` (RedisExpireStorage's layout) written with ``SET PX``.

    Expiry: a record that reaches a final status expires ``result_ttl`` (kept in the record by the
    client; default :data:`DEFAULT_TTL`) after that write. Redis expires the key itself; SQLite
    cannot, so the record carries ``expires_at`` and a read past it deletes it (and calls
    ``on_expired`` so the adapter drops Huey's own result too) and answers "no record" (UNKNOWN).

    Writes: :meth:`write` is read-merge-write (the client's submit and the worker's writes of one
    attempt are sequential). Transitions that race between processes (a cancel against the
    worker's start, SCHEDULED -> QUEUED, ...) go through :meth:`update`, atomic in the storage:
    one ``BEGIN EXCLUSIVE`` transaction on SQLite, ``WATCH``/``MULTI`` on Redis.
    """

    def __init__(self, storage: Any, *, is_redis: bool, default_ttl: float = DEFAULT_TTL,
                 on_expired: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.storage = storage
        self.is_redis = is_redis
        self.default_ttl = default_ttl
        self.on_expired = on_expired
        self._rate_table = False
        self._limiter: Any = None

    # -- encoding and expiry -----------------------------------------------------------------------
    def _ttl(self, rec: dict[str, Any], ttl: float | None) -> float:
        """Seconds the record is kept after this write; a final record stamps ``expires_at``."""
        if rec.get("status") in _FINAL:
            keep = float(self.default_ttl if rec.get("result_ttl") is None else rec["result_ttl"])
            rec.setdefault("expires_at", time.time() + keep)
            return max(0.001, rec["expires_at"] - time.time())
        return float(ttl or self.default_ttl)

    @staticmethod
    def _encode(rec: dict[str, Any]) -> bytes:
        return json.dumps(rec, separators=(",", ":")).encode()

    def _decode(self, task_id: str, raw: Any) -> dict[str, Any] | None:
        if raw is None or raw is EmptyData:
            return None
        rec: dict[str, Any] = json.loads(bytes(raw))
        exp = rec.get("expires_at")
        if exp is not None and exp <= time.time():
            return None
        return rec

    def _forget_expired(self, task_id: str, raw: Any) -> None:
        rec = json.loads(bytes(raw))
        self.storage.delete_data(task_id)
        if self.on_expired is not None:
            self.on_expired(task_id, rec)

    # -- StateStore --------------------------------------------------------------------------------
    def read(self, task_id: str) -> dict[str, Any] | None:
        raw = self.storage.peek_data(task_id)
        rec = self._decode(task_id, raw)
        if rec is None and raw is not EmptyData:
            self._forget_expired(task_id, raw)  # SQLite's lazy expiry (Redis already dropped the key)
        return rec

    def write(self, task_id: str, fields: dict[str, Any], ttl: float | None) -> None:
        rec = self.read(task_id) or {}
        rec.update(fields)
        self._put(task_id, rec, ttl)

    def _put(self, task_id: str, rec: dict[str, Any], ttl: float | None) -> None:
        keep = self._ttl(rec, ttl)
        if self.is_redis:
            self.storage.conn.set(self.storage.result_key(task_id), self._encode(rec), px=max(1, int(keep * 1000)))
        else:
            self.storage.put_data(task_id, self._encode(rec), is_result=True)

    def update(self, task_id: str, change: Callable[[dict[str, Any] | None], dict[str, Any] | None],
               ttl: float | None = None) -> tuple[bool, dict[str, Any] | None]:
        """Atomically merge ``change(record)`` into the record; ``change`` returns None to refuse.

        Returns (changed, the record after the call).
        """
        if self.is_redis:
            import redis as _redis

            key = self.storage.result_key(task_id)
            with self.storage.conn.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(key)
                        rec = self._decode(task_id, pipe.get(key))
                        fields = change(rec)
                        if fields is None:
                            pipe.unwatch()
                            return False, rec
                        new = {**(rec or {}), **fields}
                        keep = self._ttl(new, ttl)
                        pipe.multi()
                        pipe.set(key, self._encode(new), px=max(1, int(keep * 1000)))
                        pipe.execute()
                        return True, new
                    except _redis.WatchError:
                        continue
        s = self.storage
        with s.db(commit=True) as curs:  # BEGIN EXCLUSIVE: one writer across processes
            curs.execute("select value from kv where queue = ? and key = ?", (s.name, task_id))
            row = curs.fetchone()
            rec = self._decode(task_id, row[0] if row else None)
            fields = change(rec)
            if fields is None:
                return False, rec
            new = {**(rec or {}), **fields}
            self._ttl(new, ttl)
            curs.execute("insert or replace into kv (queue, key, value) values (?, ?, ?)",
                         (s.name, task_id, self._encode(new)))
            return True, new

    def delete(self, task_id: str) -> None:
        self.storage.delete_data(task_id)

    def purge(self, queues: Sequence[str]) -> None:
        """Drop the records of the tasks that waited in ``queues`` (their messages are gone) and the unique
        claims bound to them; also expired records (SQLite's sweep). Records of started or finished tasks
        are kept until they expire, so purging one queue never turns another task's state into UNKNOWN."""
        wanted = set(queues)
        waiting = {Status.QUEUED.value, Status.SCHEDULED.value, Status.RETRYING.value}

        def drop(rec: dict[str, Any] | None) -> bool:
            return rec is None or (rec.get("status") in waiting and rec.get("queue") in wanted)

        if self.is_redis:
            conn, base = self.storage.conn, self.storage.result_key("")
            keys = [k for k in conn.scan_iter(match=base + b"*", count=1000)
                    if not k[len(base):].startswith((b"unique:", b"rate:"))]
            for i in range(0, len(keys), 500):
                batch = keys[i:i + 500]
                gone = [k for k, raw in zip(batch, conn.mget(batch))
                        if raw is not None and drop(self._decode("", raw))]
                if gone:
                    conn.delete(*gone)
            for k in conn.scan_iter(match=base + b"unique:*", count=1000):
                bound = conn.get(k)
                if bound is not None and not conn.exists(self.storage.result_key(bound.decode())):
                    conn.delete(k)
            return
        s = self.storage
        with s.db(commit=True) as curs:
            curs.execute("select key, value from kv where queue = ?", (s.name,))
            rows = curs.fetchall()
            kept, uniques = set(), []
            for key, value in rows:
                if key.startswith("unique:"):
                    uniques.append((key, json.loads(bytes(value))))
                elif drop(self._decode(key, value)):
                    curs.execute("delete from kv where queue = ? and key = ?", (s.name, key))
                else:
                    kept.add(key)
            for key, doc in uniques:
                if doc.get("id") not in kept or doc.get("expires_at", 0) <= time.time():
                    curs.execute("delete from kv where queue = ? and key = ?", (s.name, key))

    # -- worker liveness (a lost task reads FAILED anytask.WorkerLost) --------------------------------
    def beat(self, worker: str, info: dict[str, Any], keep: float) -> None:
        """Write the liveness beat of worker process ``worker`` (``alive:<host>:<pid>:<start>``).

        Kept ``keep`` seconds after the last beat: Redis ``SET PX``; SQLite cannot expire, so the row
        carries ``expires_at`` (``purge()`` sweeps it) and the reader judges by ``beat_at``.
        """
        now = time.time()
        doc = {**info, "beat_at": now, "keep": keep, "expires_at": now + keep}
        if self.is_redis:
            self.storage.conn.set(self.storage.result_key(_ALIVE + worker), self._encode(doc),
                                  px=max(1, int(keep * 1000)))
        else:
            self.storage.put_data(_ALIVE + worker, self._encode(doc))

    def last_beat(self, worker: str) -> tuple[dict[str, Any] | None, float | None]:
        """(the beat of ``worker``, seconds since it was written), or (None, None) if there is none.

        One round trip. Redis: the age comes from the key's PTTL (the Redis server's clock, so the
        reader's and the worker's clocks need not agree); SQLite (one host): ``time.time() - beat_at``.
        """
        if self.is_redis:
            key = self.storage.result_key(_ALIVE + worker)
            with self.storage.conn.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                raw, pttl = pipe.execute()
            if raw is None:
                return None, None
            doc: dict[str, Any] = json.loads(bytes(raw))
            if doc.get("keep") is not None and pttl is not None and pttl >= 0:
                return doc, max(0.0, float(doc["keep"]) - pttl / 1000.0)
            return doc, max(0.0, time.time() - float(doc["beat_at"]))
        raw = self.storage.peek_data(_ALIVE + worker)
        if raw is None or raw is EmptyData:
            return None, None
        doc = json.loads(bytes(raw))
        return doc, max(0.0, time.time() - float(doc["beat_at"]))

    # -- unique keys (UNIQUE) ----------------------------------------------------------------------
    def claim_unique(self, key: str, task_id: str, ttl: float) -> str | None:
        k = "unique:" + key
        if self.is_redis:  # Huey's put_if_empty on RedisExpireStorage is SET NX EX
            for _ in range(3):
                if self.storage.put_if_empty(k, task_id.encode(), max(1, math.ceil(ttl))):
                    return None
                raw = self.storage.peek_data(k)
                if raw is not EmptyData:
                    return bytes(raw).decode()
            raise BrokerUnavailable(f"unique key {key!r} kept changing")
        # SqliteStorage.put_if_empty has no TTL: the claim carries its expiry and is checked and
        # (re)bound in one exclusive transaction.
        s = self.storage
        with s.db(commit=True) as curs:
            curs.execute("select value from kv where queue = ? and key = ?", (s.name, k))
            row = curs.fetchone()
            if row is not None:
                doc = json.loads(bytes(row[0]))
                if doc["expires_at"] > time.time():
                    return str(doc["id"])
            curs.execute("insert or replace into kv (queue, key, value) values (?, ?, ?)",
                         (s.name, k, self._encode({"id": task_id, "expires_at": time.time() + ttl})))
        return None

    def release_unique(self, key: str, task_id: str) -> None:
        k = "unique:" + key
        if self.is_redis:
            self.storage.conn.eval(_RELEASE_IF_OWNER, 1, self.storage.result_key(k), task_id)
            return
        s = self.storage
        with s.db(commit=True) as curs:
            curs.execute("select value from kv where queue = ? and key = ?", (s.name, k))
            row = curs.fetchone()
            if row is not None and json.loads(bytes(row[0])).get("id") == task_id:
                curs.execute("delete from kv where queue = ? and key = ?", (s.name, k))

    # -- rate limits (RATE_LIMIT): a sliding window per name ------------------------------------------
    def _ensure_rate_table(self) -> None:
        if not self._rate_table:
            self.storage.sql("create table if not exists anytask_rate (queue text not null, name text not null, "
                             "ts real not null)", commit=True)
            self.storage.sql("create index if not exists anytask_rate_name_ts on anytask_rate (queue, name, ts)",
                             commit=True)
            self._rate_table = True

    def acquire_rate(self, name: str, count: int, period: float, token: str) -> float:
        """0.0 if a start is allowed now (and counted), else the seconds until a slot frees up."""
        if self.is_redis:
            conn = self.storage.conn
            if self._limiter is None or self._limiter.client is not conn:
                from ._redis_state import RedisRateLimiter

                self._limiter = RedisRateLimiter(conn, prefix=self.storage.result_key("rate:").decode())
            return float(self._limiter.acquire(name, count, period, token))
        self._ensure_rate_table()
        s, now = self.storage, time.time()
        with s.db(commit=True) as curs:  # BEGIN EXCLUSIVE: the count and the insert are one step
            curs.execute("delete from anytask_rate where queue = ? and name = ? and ts <= ?",
                         (s.name, name, now - period))
            curs.execute("select count(*), min(ts) from anytask_rate where queue = ? and name = ?", (s.name, name))
            n, oldest = curs.fetchone()
            if n < count:
                curs.execute("insert into anytask_rate (queue, name, ts) values (?, ?, ?)", (s.name, name, now))
                return 0.0
            return max(0.001, float(oldest) + period - now)


_RELEASE_IF_OWNER = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


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
            Feature.PRIORITY: native("Huey priority= per message (higher first): SqliteStorage orders by "
                                     "priority desc, id; on Redis PriorityRedisExpireHuey keeps the queue in a "
                                     "sorted set popped with BZPOPMIN (FIFO within a priority). A consumer takes "
                                     "one message per idle worker, so nothing is prefetched past a higher one"),
            Feature.CANCEL: native("before start: the record goes to CANCELLED atomically against the worker's "
                                   "start (SQLite BEGIN EXCLUSIVE / Redis WATCH) and Huey revoke_by_id("
                                   "revoke_once=True) makes the consumer skip the message; a pre_execute hook "
                                   "raising CancelExecution closes the race with a worker that already checked the "
                                   "revocation. While running: NOT_INTERRUPTIBLE, Huey cannot stop a running "
                                   "task (revocation only prevents executions)"),
            Feature.PROGRESS: emulated("Huey has no progress API: anytask.progress() writes the task's state "
                                       "record in Huey's storage (Recorder.progress), read by get()"),
            **emulated_canvas({
                Feature.CHAIN: "Huey's task.then() pipelines are not used: the consumer enqueues a later link "
                               "into the same Huey instance (anytask runs one per queue) without anytask's submit "
                               "record; Huey is at-most-once, so a link message lost with a killed consumer also "
                               "stops the chain",
                Feature.GROUP: "Huey's result_group is a client-side gather too",
                Feature.CHORD: "Huey's chord is not used, for the chain's reason; a member lost with a killed "
                               "consumer (at-most-once) means no callback"}),  # canvas (docs/canvas.md)
            Feature.RATE_LIMIT: emulated("cluster-wide sliding window per task name, checked in a pre_execute hook "
                                         "before the start is recorded (Redis: the shared RedisRateLimiter Lua "
                                         "script; SQLite: a table in Huey's file, one BEGIN EXCLUSIVE "
                                         "transaction); over the limit the message is re-scheduled with Huey's "
                                         "RetryTask(delay=...) without using a retry, so no worker slot sleeps. "
                                         "Not huey.rate_limit(): its fixed-window reset is a non-atomic "
                                         "read-delete-put that concurrent workers can undo. Starts are late by up "
                                         "to the scheduler's 1 s tick"),
            Feature.UNIQUE: emulated("Huey has no unique submits (lock_task only locks a running body): the "
                                     "client claims the key in Huey's storage before enqueueing, Redis: "
                                     "put_if_empty = SET NX EX; SQLite: put_if_empty has no TTL, so the claim "
                                     "stores its expiry and is checked and bound in one BEGIN EXCLUSIVE "
                                     "transaction. The claim lasts result_ttl (default 7 days) from the submit"),
            Feature.RESULT_TTL: emulated("the record and Huey's result expire result_ttl (default 7 days) after "
                                         "the final write: Redis SET PX / PEXPIRE; SQLite has no expiry, so the "
                                         "record stores expires_at and a read past it deletes record and result "
                                         "(lazily: unread rows stay in the file)"),
            Feature.PERIODIC: emulated(emulated_how(  # anytask/facade/beat.py, docs/periodic.md
                "claim_unique in Huey's storage (Redis SET NX EX; SQLite one BEGIN EXCLUSIVE transaction)",
                "Not Huey's periodic_task(crontab): the consumer checks it once a minute (no intervals under a "
                "minute), a periodic task takes no arguments, every consumer with periodic enabled fires it (run "
                "one), and its runs bypass anytask's submit (no state record). Opt-in 'anytask worker --beat "
                "native': Huey's periodic_task(crontab) whose body submits through anytask (whole-minute cron, "
                "every= dividing an hour or a day; others refused); run exactly one such consumer")),
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
        self._consumer = False  # run_worker: this process is a Huey consumer (patient Redis writes)
        self._local = threading.local()
        self.store = HueyStateStore(_LazyStorage(self), is_redis=url.transport == "redis", default_ttl=self.ttl,
                                    on_expired=self._drop_native_result)
        self.recorder = Recorder(self.store, ttl=self.ttl)
        raw = url.params.get("worker_liveness")
        self.liveness = DEFAULT_LIVENESS
        if raw is not None:
            try:
                self.liveness = float(raw)
            except ValueError:
                raise ConfigurationError(f"worker_liveness={raw!r} must be seconds (default "
                                         f"{DEFAULT_LIVENESS:g})") from None
            if not math.isfinite(self.liveness) or self.liveness < 1:
                raise ConfigurationError(f"worker_liveness={raw!r} must be at least 1 second (a worker beats "
                                         f"every worker_liveness/{_BEATS_PER_TIMEOUT} s; default "
                                         f"{DEFAULT_LIVENESS:g})")
        self._beat_lock = threading.Lock()  # only _worker_alive takes it (never held across the consumer's fork)
        self._beat_pid: int | None = None
        self._worker_id = ""
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
            # A client gets no redis-py retries: a dead broker answers within the connect timeout. The
            # consumer's do (redis-py's own Retry, about WORKER_PATIENCE s): Huey's end-of-task writes
            # (revoke flag, result) raise out of Huey's _execute before any hook runs, so a task ending
            # while Redis restarts would otherwise stay RUNNING for ever.
            from ._redis_state import patient_redis_options  # (redis-py: huey+redis only)

            patience = patient_redis_options() if self._consumer else {}
            self._pool = redis.ConnectionPool.from_url(self.url.broker_url, socket_connect_timeout=t,
                                                       socket_timeout=max(t, 5.0), health_check_interval=30,
                                                       **patience)
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
                cls = SqliteHuey if self.url.transport == "sqlite" else PriorityRedisExpireHuey
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
            if redis is not None and isinstance(exc, redis.AuthenticationError):  # a ConnectionError: test first
                raise credentials_refused(what, "Redis", self.url.masked, mask(str(exc))) from None
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
                           timeout=o.timeout or 0, priority=o.priority)
        # What the worker and cancel() need that Huey's message does not carry.
        extra: dict[str, Any] = {"queue": message.queue}
        if o.result_ttl is not None:
            extra["result_ttl"] = o.result_ttl
        if o.rate_limit is not None:
            extra["rate_limit"] = o.rate_limit
        with self._errors(f"submitting {task.name}"):
            self.recorder.submitted(message.id, task.name, scheduled=eta is not None,
                                    enqueued_at=message.enqueued_at, extra=extra)
            try:
                h.enqueue(htask)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.recorder.forget(message.id)
                raise

    def get(self, task_id: str) -> TaskResult:
        with self._errors(f"reading task {task_id}"):
            rec = self.store.read(task_id)
            if rec is not None and rec.get("status") == Status.RUNNING.value and rec.get("worker"):
                rec = self._unless_worker_lost(task_id, rec)  # the one extra read: RUNNING records only
            if not rec:
                return TaskResult.unknown(task_id)
            return TaskResult.from_dict({**rec, "id": task_id})

    def _unless_worker_lost(self, task_id: str, rec: dict[str, Any]) -> dict[str, Any] | None:
        """A RUNNING ``rec`` whose worker process stopped beating: FAILED (anytask.WorkerLost), persisted.

        The worker is judged by the longer of this client's ``worker_liveness`` and the one the worker
        beats with (a worker started with a longer timeout beats less often). The FAILED write is an
        atomic update applied only if the record still says RUNNING with the same worker, so a task
        that ends (or a reader that got there first) wins; the record then has its normal final TTL.
        """
        worker = str(rec["worker"])
        beat, age = self.store.last_beat(worker)
        limit = max(self.liveness, float((beat or {}).get("liveness") or 0.0))
        if age is not None and age <= limit:
            return rec
        host, pid, _start = _split_worker(worker)
        now = time.time()
        if beat is not None and age is not None:
            last = now - age
            when = (f"its last liveness beat was {age:.0f} s ago ({_utc(last)}), over the {limit:g} s "
                    f"worker_liveness timeout")
        else:
            last = now
            started = rec.get("started_at")
            when = (f"it has no liveness beat left (a beat is kept at least {_beat_keep(limit):.0f} s after "
                    f"the last one), so it stopped more than that long ago"
                    + (f", after the task started at {_utc(float(started))}" if started else ""))
        message = (f"the Huey worker process {pid} on host {host} that was running this task stopped beating: "
                   f"{when}. It was most likely killed (kill -9, out of memory) while the task ran. Huey runs a "
                   f"task at most once and does not run it again: resubmit it if it must run "
                   f"(see docs/reliability.md)")
        fields = {"status": Status.FAILED.value, "finished_at": last,
                  "error": ErrorInfo("anytask.WorkerLost", message).to_dict()}

        def lost(r: dict[str, Any] | None) -> dict[str, Any] | None:
            if r is not None and r.get("status") == Status.RUNNING.value and r.get("worker") == worker:
                return fields
            return None

        try:
            _, now_rec = self.store.update(task_id, lost)
        except _STORE_ERRORS as exc:  # the answer stands; the next read tries to persist it again
            log.warning("could not record task %s as lost with its worker %s: %s", task_id, worker, exc)
            return {**rec, **fields}
        return now_rec

    def cancel(self, task_id: str) -> CancelResult:
        with self._errors(f"cancelling task {task_id}"):
            rec = self.store.read(task_id)
            if rec is None:
                raise UnknownTaskId(f"no task with id {task_id!r} on {self.url.masked} (never submitted, or expired)")
            h = self.huey(rec["queue"]) if rec.get("queue") else None
            # Revoke first: a consumer that dequeues the message from now on skips it (SIGNAL_REVOKED).
            # The record decides: whichever of this update and the worker's start (pre_execute) comes
            # first wins; a worker that passed the revocation check before it finds CANCELLED there.
            if h is not None:
                h.revoke_by_id(task_id, revoke_once=True)
            note = "cancelled before start (Huey revoke_by_id)"
            done, now = self.store.update(task_id, lambda r: (
                {"status": Status.CANCELLED.value, "finished_at": time.time(), "note": note}
                if r is not None and r.get("status") in _CANCELLABLE else None))
            status = Status((now or {}).get("status", Status.UNKNOWN.value))
            if done or status is Status.CANCELLED:  # (or the consumer saw the revocation first)
                return CancelResult(task_id, CancelOutcome.CANCELLED_BEFORE_START, Status.CANCELLED, note)
            if h is not None:  # not ours to skip any more: a later retry of this task must still run
                h.restore_by_id(task_id)
            if status is Status.RUNNING and now is not None and now.get("worker"):  # its worker may be gone
                now = self._unless_worker_lost(task_id, now)
                status = Status((now or {}).get("status", Status.UNKNOWN.value))
            if status.finished or status is Status.UNKNOWN:
                return CancelResult(task_id, CancelOutcome.ALREADY_FINISHED, status)
            return CancelResult(task_id, CancelOutcome.NOT_INTERRUPTIBLE, status,
                                "Huey cannot stop a running task (revocation only prevents executions); "
                                "it will finish")

    def claim_unique(self, key: str, task_id: str, ttl: float) -> str | None:
        with self._errors(f"claiming unique key {key!r}"):
            return self.store.claim_unique(key, task_id, ttl)

    def release_unique(self, key: str, task_id: str) -> None:
        with self._errors(f"releasing unique key {key!r}"):
            self.store.release_unique(key, task_id)

    def _drop_native_result(self, task_id: str, rec: dict[str, Any]) -> None:
        """An expired record's Huey result goes with it (SQLite's lazy expiry)."""
        if rec.get("queue"):
            self.huey(rec["queue"]).storage.delete_data(task_id)

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
            self.store.purge(queues)

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
        rec = self.recorder

        def run(*args: Any, **kwargs: Any) -> Any:
            wait = getattr(local, "defer", None)
            if wait:  # over the rate limit (see the pre_execute hook): back to Huey's schedule
                local.defer, local.deferred = None, True
                raise RetryTask(delay=wait)
            htask = getattr(local, "task", None)
            task_id = htask.id if htask else ""

            def report(progress: dict[str, Any]) -> None:
                if task_id:
                    rec.progress(task_id, progress)

            ctx = execution.TaskContext(task_id, task.name, getattr(local, "attempt", 1), report_progress=report)
            with execution.task_context(ctx):
                return execution.call(task, args, kwargs)

        run.__name__ = run.__qualname__ = task.func.__name__
        run.__doc__ = task.func.__doc__
        return run

    def _worker_alive(self) -> str:
        """This process's worker id ``<host>:<pid>:<start time>``, beating in this process's storage.

        Huey forks its process workers from the consumer, so the beat starts lazily in the process that
        runs tasks: the first call in a pid writes the first beat (before any RUNNING record names this
        worker) and starts a daemon thread that beats every ``worker_liveness / 6`` seconds. Later calls
        cost nothing.
        """
        pid = os.getpid()
        if self._beat_pid == pid:
            return self._worker_id
        with self._beat_lock:
            if self._beat_pid != pid:
                host, started = socket.gethostname(), time.time()
                worker = f"{host}:{pid}:{started:.3f}"
                info = {"host": host, "pid": pid, "started_at": started, "liveness": self.liveness}
                keep, interval = _beat_keep(self.liveness), self.liveness / _BEATS_PER_TIMEOUT
                store = self.store

                def beat() -> None:
                    store.beat(worker, info, keep)

                def beat_for_ever() -> None:
                    failing = False
                    while True:
                        time.sleep(interval)
                        try:
                            beat()
                        except Exception as exc:  # noqa: BLE001 - the storage is away: try again next time
                            if not failing:
                                log.warning("worker %s could not write its liveness beat: %s", worker, exc)
                            failing = True
                        else:
                            if failing:
                                log.warning("worker %s writes its liveness beat again", worker)
                            failing = False

                self._worker_id, self._beat_pid = worker, pid
                threading.Thread(target=beat_for_ever, name="anytask-huey-liveness", daemon=True).start()
                beat()  # raises like the start's own write would if the storage is away
        return self._worker_id

    def _connect_hooks(self, h: Huey) -> None:
        # the consumer's writes wait out a short outage of the storage (a task's end is not lost)
        retry_on: tuple[type[BaseException], ...] = (BrokerUnavailable, sqlite3.OperationalError)
        if redis is not None:
            retry_on += (redis.ConnectionError, redis.TimeoutError)
        rec = Recorder(self.store, ttl=self.ttl, patience=WORKER_PATIENCE, retry_on=retry_on)
        store = self.store
        local = self._local
        alive = self._worker_alive

        @h.pre_execute("anytask_start")
        def start(htask: Any) -> None:
            # Huey runs this after its own revocation check, right before the task body. Exceptions
            # other than CancelExecution are logged by Huey and the task runs anyway.
            local.task, local.defer, local.deferred, local.record = htask, None, False, {}
            admitted = False  # a rate-limited task first takes a slot, then starts
            worker = alive()  # this process's liveness beat (started on the first task in the process)

            def begin(r: dict[str, Any] | None) -> dict[str, Any] | None:
                if r is not None and (r.get("status") == Status.CANCELLED.value
                                      or (r.get("rate_limit") and not admitted)):
                    return None
                return {"status": Status.RUNNING.value, "started_at": time.time(),
                        "attempts": int((r or {}).get("attempts") or 0) + 1, "worker": worker}

            started, now = store.update(htask.id, begin)
            if not started and now is not None and now.get("status") != Status.CANCELLED.value:
                count, period = parse_rate(now["rate_limit"])
                wait = store.acquire_rate(now.get("task_name") or htask.name, count, period, htask.id)
                if wait > 0:
                    local.defer = wait  # run() re-schedules it; the record keeps its status
                    return
                admitted = True
                started, now = store.update(htask.id, begin)
            if not started:  # cancelled (a cancel may win the race with this start)
                raise CancelExecution("cancelled in anytask before it started")
            local.record = now or {}
            local.attempt = local.record.get("attempts", 1)

        @h.signal(S.SIGNAL_CANCELED)
        def canceled(signal: str, htask: Any, *a: Any) -> None:
            h.restore_by_id(htask.id)  # the revocation it did not get to consume

        @h.signal(S.SIGNAL_REVOKED)
        def revoked(signal: str, htask: Any, *a: Any) -> None:
            # Huey skipped a revoked message (anytask's cancel, or huey.revoke_by_id by hand).
            store.update(htask.id, lambda r: (
                {"status": Status.CANCELLED.value, "finished_at": time.time(), "note": "revoked in Huey"}
                if r is not None and r.get("status") in _CANCELLABLE else None))

        @h.signal(S.SIGNAL_ENQUEUED)
        def enqueued(signal: str, htask: Any, *a: Any) -> None:
            # The scheduler moves a due task from the schedule to the queue: SCHEDULED -> QUEUED.
            # (A pending retry stays RETRYING; a cancelled task stays CANCELLED.)
            if htask.eta is not None:
                store.update(htask.id, lambda r: (
                    {"status": Status.QUEUED.value}
                    if r is not None and r.get("status") == Status.SCHEDULED.value else None))

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
                error = ErrorInfo.from_exception(exc).to_dict()
                store.update(message.id, lambda r: (
                    {"status": Status.FAILED.value, "finished_at": time.time(), "error": error}
                    if r is None or r.get("status") not in _FINAL else None))
                raise

        h.deserialize_task = deserialize_task  # used by Huey's dequeue() and its scheduler

        @h.post_execute("anytask_record_outcome")
        def outcome(htask: Any, value: Any, exc: BaseException | None) -> None:
            # Called for every outcome (also TaskTimeout), after Huey stored its own result and before
            # it re-queues a retry; ``htask.retries`` is the number of retries still allowed.
            local.task = None
            if getattr(local, "deferred", False):  # rate-limited: not an attempt, nothing to record
                local.deferred = False
                return
            if exc is None:
                rec.succeeded(htask.id, value)
            else:
                rec.failed(htask.id, ErrorInfo.from_exception(exc), will_retry=bool(htask.retries))
            ttl = (getattr(local, "record", None) or {}).get("result_ttl")
            if ttl is not None and store.is_redis and (exc is None or not htask.retries):
                # Huey's own result (RedisExpireStorage: expire_time for all) goes with the record.
                h.storage.conn.pexpire(h.storage.result_key(htask.id), max(1, int(float(ttl) * 1000)))

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

    def native_beat(self, schedules: Sequence[Schedule]) -> Any:
        """``anytask worker --beat native``: Huey's periodic_task(crontab) fired by the consumer (anytask/adapters/huey_beat.py)."""
        from .huey_beat import HueyNativeBeat

        return HueyNativeBeat(self, schedules)

    def run_worker(self, tasks: Sequence[Task[Any, Any]], options: WorkerOptions) -> int:
        serve_canvas(self.url.raw)  # canvas: continuations are submitted through this backend
        if len(options.queues) != 1:
            raise ConfigurationError(
                f"a Huey consumer serves one Huey instance, i.e. one queue; got --queues {','.join(options.queues)}. "
                "Start one worker per queue (e.g. --queues default and --queues emails)")
        config = self.consumer_config(options)
        queue = options.queues[0]
        if not self._consumer:
            self.close()  # storages opened before (by a client) have no patience
            self._consumer = True
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

    # -- describe_worker (benchmark harness, issue 4) --
    def describe_worker(self, options: WorkerOptions) -> dict[str, Any]:
        cfg = self.consumer_config(options)
        n = cfg.workers
        per = n if cfg.worker_type == "process" else 1
        return {"pool": f"huey consumer, {cfg.worker_type} workers x{n}", "processes": per, "threads": n // per,
                "slots": n, "config": options.config,
                "knobs": {**{k: v for k, v in cfg._asdict().items() if v is not None},
                          # the facade reads results from anytask's task record, not Huey's result store,
                          # so Huey's notify_result (a BLPOP on Huey's result) has no say in it
                          "results_read_from": "anytask task record"}}


class _LazyStorage:
    """Defers opening the state storage to first use (and after a close, e.g. in forked workers)."""

    def __init__(self, adapter: HueyAdapter) -> None:
        self._adapter = adapter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter.state_storage(), name)
