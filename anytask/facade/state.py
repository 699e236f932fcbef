"""State records for libraries that keep no task states of their own.

Huey, Dramatiq and TaskiQ store results but not "queued/running/retrying". Their adapters
record the state through the library's own hooks (signals, middleware) into a
:class:`StateStore` that lives in the backend's own storage (Huey's storage, Redis). The
record is one JSON-able dict per task id; :class:`Recorder` writes it the same way for all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from .errors import BrokerUnavailable
from .patience import patiently
from .records import ErrorInfo, TaskResult
from .status import Status

T = TypeVar("T")

DEFAULT_TTL = 7 * 24 * 3600.0  # state records and results expire after a week unless told


class StateStore(Protocol):
    """Where an adapter keeps one record per task id. Writes merge fields into the record."""

    def write(self, task_id: str, fields: dict[str, Any], ttl: float | None) -> None: ...

    def read(self, task_id: str) -> dict[str, Any] | None: ...

    def delete(self, task_id: str) -> None: ...


class MemoryStateStore:
    """A dict, for the memory backend and tests. A record written with a ``ttl`` is gone once it has passed
    (on read; unread expired records are swept now and then as the store grows)."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, Any]] = {}
        self._expires: dict[str, float] = {}  # time.monotonic() deadline per record written with a ttl
        self._lock = threading.Lock()
        self._sweep_at = 1024

    def write(self, task_id: str, fields: dict[str, Any], ttl: float | None) -> None:
        with self._lock:
            self._data.setdefault(task_id, {}).update(fields)
            if ttl is None:
                self._expires.pop(task_id, None)
            else:
                self._expires[task_id] = time.monotonic() + ttl
            if len(self._data) >= self._sweep_at:
                now = time.monotonic()
                for tid in [t for t, at in self._expires.items() if at <= now]:
                    self._forget(tid)
                self._sweep_at = 2 * len(self._data) + 1024

    def read(self, task_id: str) -> dict[str, Any] | None:
        with self._lock:
            at = self._expires.get(task_id)
            if at is not None and at <= time.monotonic():
                self._forget(task_id)
            rec = self._data.get(task_id)
            return dict(rec) if rec is not None else None

    def delete(self, task_id: str) -> None:
        with self._lock:
            self._forget(task_id)

    def _forget(self, task_id: str) -> None:
        self._data.pop(task_id, None)
        self._expires.pop(task_id, None)


class Recorder:
    """Writes the state transitions of a task into a :class:`StateStore`.

    Every write refreshes the record's TTL (the store's default, or ``ttl`` on a final write: a
    task's ``result_ttl`` counts from its end).

    A worker's recorder has ``patience`` (seconds, :data:`~anytask.facade.patience.WORKER_PATIENCE`):
    a write that fails with one of ``retry_on`` (the store restarting) is retried for that long, so a
    task ending during a short outage still gets its final state. A client's recorder has none.
    """

    def __init__(self, store: StateStore, ttl: float | None = DEFAULT_TTL, *, patience: float = 0.0,
                 retry_on: tuple[type[BaseException], ...] = (BrokerUnavailable,)) -> None:
        self.store = store
        self.ttl = ttl
        self.patience = patience
        self.retry_on = retry_on

    def patiently(self, write: Callable[[], T], what: str) -> T:
        """``write()`` with this recorder's patience (none: called once)."""
        if self.patience <= 0:
            return write()
        return patiently(write, what, patience=self.patience, retry_on=self.retry_on)

    def _w(self, task_id: str, fields: dict[str, Any], ttl: float | None = None) -> None:
        keep = ttl if ttl is not None else self.ttl
        if self.patience <= 0:  # clients, and the submit path: one direct write, nothing built for a retry
            self.store.write(task_id, fields, keep)
            return
        patiently(lambda: self.store.write(task_id, fields, keep), f"writing the state of task {task_id}",
                  patience=self.patience, retry_on=self.retry_on)

    def submitted(self, task_id: str, task_name: str, *, scheduled: bool = False,
                  enqueued_at: float | None = None, ttl: float | None = None,
                  extra: dict[str, Any] | None = None) -> None:
        """Record the submission (before enqueueing); ``extra`` adds adapter fields in the same write."""
        self._w(task_id, {"status": (Status.SCHEDULED if scheduled else Status.QUEUED).value,
                          "task_name": task_name, "enqueued_at": enqueued_at or time.time(),
                          "attempts": 0, **(extra or {})}, ttl)

    def started(self, task_id: str, attempt: int | None = None) -> None:
        fields: dict[str, Any] = {"status": Status.RUNNING.value, "started_at": time.time()}
        if attempt is not None:
            fields["attempts"] = attempt
        self._w(task_id, fields)

    def succeeded(self, task_id: str, value: Any, *, store_value: bool = True, ttl: float | None = None,
                  extra: dict[str, Any] | None = None) -> None:
        # a success after retries carries no error of an earlier attempt
        fields: dict[str, Any] = {"status": Status.SUCCEEDED.value, "finished_at": time.time(), "error": None,
                                  **(extra or {})}
        if store_value:
            fields["value"] = value
        self._w(task_id, fields, ttl)

    def failed(self, task_id: str, error: ErrorInfo, *, will_retry: bool, ttl: float | None = None,
               extra: dict[str, Any] | None = None) -> None:
        fields: dict[str, Any] = {"status": (Status.RETRYING if will_retry else Status.FAILED).value,
                                  "error": error.to_dict(), **(extra or {})}
        if not will_retry:
            fields["finished_at"] = time.time()
        self._w(task_id, fields, None if will_retry else ttl)

    def cancelled(self, task_id: str, note: str = "", *, ttl: float | None = None) -> None:
        self._w(task_id, {"status": Status.CANCELLED.value, "finished_at": time.time(), "note": note}, ttl)

    def progress(self, task_id: str, progress: dict[str, Any]) -> None:
        self._w(task_id, {"progress": progress})

    def read(self, task_id: str) -> TaskResult:
        rec = self.store.read(task_id)
        if not rec:
            return TaskResult.unknown(task_id)
        rec = dict(rec)
        rec["id"] = task_id
        return TaskResult.from_dict(rec)

    def forget(self, task_id: str) -> None:
        self.store.delete(task_id)
