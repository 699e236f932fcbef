"""``memory://``: tasks run in this process, through JSON and the same state machine.

For tests of application code without a broker, like django.tasks' Immediate backend, but
asynchronous: a small pool of threads executes tasks so QUEUED and RUNNING are observable, and
tasks wait their turn by priority when every thread is busy.
Clients with the same URL in one process share one in-memory queue and store.
``memory://?workers=N`` sets the thread count (default 4).
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..facade import execution
from ..facade.adapter import Adapter, WorkerOptions
from ..facade.capabilities import Capabilities, Feature, native, unsupported
from ..facade.continuation import emulated_canvas
from ..facade.errors import ConfigurationError, UnknownTaskId
from ..facade.records import CancelOutcome, CancelResult, ErrorInfo, Message, TaskResult
from ..facade.state import MemoryStateStore, Recorder
from ..facade.status import Status
from ..facade.task import Task, parse_rate

log = logging.getLogger(__name__)

_CANCELLABLE = frozenset({Status.QUEUED.value, Status.SCHEDULED.value, Status.RETRYING.value})


class _Engine:
    """N threads taking jobs from one priority heap (higher priority first, FIFO within a priority)."""

    def __init__(self, workers: int) -> None:
        self.recorder = Recorder(MemoryStateStore())
        self.workers = workers
        self.lock = threading.Lock()  # the heap, claims, rate windows, and start-vs-cancel of a record
        self._ready = threading.Condition(self.lock)
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.claims = MemoryStateStore()  # unique key -> {"id": task id}, expiring with the claim's ttl
        self.windows: dict[str, deque[float]] = {}  # task name -> monotonic start times inside the rate period
        for i in range(workers):
            threading.Thread(target=self._loop, name=f"anytask-memory-{i}", daemon=True).start()

    def put(self, priority: int, job: Callable[[], None]) -> None:
        with self._ready:
            heapq.heappush(self._heap, (-priority, next(self._seq), job))
            self._ready.notify()

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._heap:
                    self._ready.wait()
                job = heapq.heappop(self._heap)[2]
            try:
                job()
            except Exception:  # noqa: BLE001 - a job's own errors are recorded by it; this is a bug guard
                log.exception("memory:// job failed outside its task")

    def rate_wait(self, name: str, rate: str) -> float:
        """0 and the start counted if ``name`` may start now under ``rate``, else seconds until it may."""
        count, period = parse_rate(rate)
        now = time.monotonic()
        with self.lock:
            window = self.windows.setdefault(name, deque())
            while window and window[0] <= now - period:
                window.popleft()
            if len(window) < count:
                window.append(now)
                return 0.0
            return window[0] + period - now


_ENGINES: dict[str, _Engine] = {}
_ENGINES_LOCK = threading.Lock()


class MemoryAdapter(Adapter):
    capabilities = Capabilities(
        features={
            Feature.RETRIES: native("re-run in the in-process pool, with retry_backoff"),
            Feature.QUEUES: native("every queue is served by the in-process pool"),
            Feature.ASYNC_TASKS: native("async functions run with asyncio.run in a pool thread"),
            Feature.DELAY: native("threading.Timer before the task enters the pool"),
            Feature.TIMEOUT: unsupported("a running thread cannot be interrupted in-process"),
            Feature.PROGRESS: native("anytask.progress() writes into the in-memory record"),
            **emulated_canvas(),  # canvas (docs/canvas.md)
            Feature.PRIORITY: native("a priority heap in front of the pool's threads: when every thread is busy, "
                                     "waiting tasks start highest priority first (FIFO within one priority)"),
            Feature.CANCEL: native("before start: the record goes to CANCELLED under the engine's lock, which the "
                                   "start also takes, so a cancelled task never starts; while running: "
                                   "NOT_INTERRUPTIBLE (a thread cannot be stopped)"),
            Feature.RATE_LIMIT: native("a sliding window of start times per task name in this process (all its "
                                       "clients share the engine); a task over the limit goes back to the heap "
                                       "when the window has room, without holding a thread"),
            Feature.UNIQUE: native("a key -> task id map with the claim's expiry (result_ttl, default 7 days), "
                                   "checked and bound under one lock"),
            Feature.RESULT_TTL: native("the record expires result_ttl after its final write (checked on read; "
                                       "expired records are swept as the store grows)"),
            Feature.PERIODIC: unsupported("memory:// runs tasks inside the submitting process: there is no worker "
                                          "process for 'anytask worker --beat' to run beside, and a beat in another "
                                          "process could not reach this process's queue"),
        },
        needs_worker=False,
        delivery="at-most-once (in-process: lost if the process dies)",
        brokers=(),
    )

    def __init__(self, url: Any) -> None:
        super().__init__(url)
        key = url.broker_url
        try:
            workers = int(url.params.get("workers", 4))
        except ValueError:
            raise ConfigurationError(f"memory:// workers must be an integer, got {url.params['workers']!r}") from None
        with _ENGINES_LOCK:
            self.engine = _ENGINES.get(key) or _ENGINES.setdefault(key, _Engine(workers))

    def submit(self, task: Task[Any, Any], message: Message) -> None:
        payload = json.dumps({"args": list(message.args), "kwargs": message.kwargs})  # the same JSON as on a wire
        eta = message.options.get("eta")
        rec = self.engine.recorder
        rec.submitted(message.id, task.name, scheduled=eta is not None, enqueued_at=message.enqueued_at)
        if eta is not None:
            self._later(max(0.0, eta - time.time()), task, message.id, payload, 1)
        else:
            self._enqueue(task, message.id, payload, 1)

    def _later(self, delay: float, task: Task[Any, Any], task_id: str, payload: str, attempt: int) -> None:
        timer = threading.Timer(delay, self._enqueue, (task, task_id, payload, attempt))
        timer.daemon = True
        timer.start()

    def _enqueue(self, task: Task[Any, Any], task_id: str, payload: str, attempt: int) -> None:
        rec = self.engine.recorder
        with self.engine.lock:  # a due delay or retry becomes QUEUED, unless it was cancelled meanwhile
            status = rec.read(task_id).status
            if status is Status.CANCELLED:
                return
            if status in (Status.SCHEDULED, Status.RETRYING):
                rec.store.write(task_id, {"status": Status.QUEUED.value}, rec.ttl)
        self.engine.put(task.options.priority or 0, lambda: self._run(task, task_id, payload, attempt))

    def _run(self, task: Task[Any, Any], task_id: str, payload: str, attempt: int) -> None:
        eng, rec = self.engine, self.engine.recorder
        if task.options.rate_limit:
            wait = eng.rate_wait(task.name, task.options.rate_limit)
            if wait > 0:  # back to the heap when the window has room; this thread takes the next task
                self._later(wait, task, task_id, payload, attempt)
                return
        with eng.lock:  # the start and cancel() exclude each other: a cancelled task never starts
            if rec.read(task_id).status is Status.CANCELLED:
                return
            rec.started(task_id, attempt)
        data = json.loads(payload)
        ctx = execution.TaskContext(task_id, task.name, attempt, lambda p: rec.progress(task_id, p), adapter=self)
        ttl = task.options.result_ttl
        try:
            with execution.task_context(ctx):
                value = execution.call(task, data["args"], data["kwargs"])
        except Exception as exc:  # noqa: BLE001 - every task error is recorded
            retry = attempt <= task.options.retries
            rec.failed(task_id, ErrorInfo.from_exception(exc), will_retry=retry, ttl=ttl)
            if retry:
                self._later(task.options.retry_backoff * (2 ** (attempt - 1)), task, task_id, payload, attempt + 1)
            return
        rec.succeeded(task_id, json.loads(json.dumps(value)), ttl=ttl)

    def get(self, task_id: str) -> TaskResult:
        return self.engine.recorder.read(task_id)

    def cancel(self, task_id: str) -> CancelResult:
        rec = self.engine.recorder
        note = "cancelled before start"
        with self.engine.lock:
            now = rec.store.read(task_id)
            if now is None:
                raise UnknownTaskId(f"no task with id {task_id!r} on {self.url.masked} (never submitted, or expired)")
            if now.get("status") in _CANCELLABLE:
                rec.cancelled(task_id, note)
                return CancelResult(task_id, CancelOutcome.CANCELLED_BEFORE_START, Status.CANCELLED, note)
        status = Status(now.get("status", Status.UNKNOWN.value))
        if status.finished:
            return CancelResult(task_id, CancelOutcome.ALREADY_FINISHED, status)
        return CancelResult(task_id, CancelOutcome.NOT_INTERRUPTIBLE, status,
                            "memory:// cannot stop a running thread; it will finish")

    def claim_unique(self, key: str, task_id: str, ttl: float) -> str | None:
        """In-process SET NX EX: unique keys and the chord emulation's completion slots."""
        claims = self.engine.claims
        with self.engine.lock:
            held = (claims.read(key) or {}).get("id")
            if held is not None and held != task_id:
                return str(held)
            claims.write(key, {"id": task_id}, ttl)
        return None

    def release_unique(self, key: str, task_id: str) -> None:
        with self.engine.lock:
            if (self.engine.claims.read(key) or {}).get("id") == task_id:
                self.engine.claims.delete(key)

    def run_worker(self, tasks: Sequence[Task[Any, Any]], options: WorkerOptions) -> int:
        raise ConfigurationError("memory:// runs tasks inside the submitting process; it has no worker to start")

    # -- describe_worker (benchmark harness, issue 4) --
    def describe_worker(self, options: WorkerOptions) -> dict[str, Any]:
        n = self.engine.workers  # the URL's workers=, not --concurrency (there is no worker)
        return {"pool": f"threads x{n} in the producer process", "processes": 0, "threads": n, "slots": n,
                "config": options.config, "knobs": {"workers": n}}
