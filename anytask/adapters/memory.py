"""``memory://``: tasks run in this process, through JSON and the same state machine.

For tests of application code without a broker, like django.tasks' Immediate backend, but
asynchronous: a small thread pool executes tasks so QUEUED and RUNNING are observable.
Clients with the same URL in one process share one in-memory queue and store.
``memory://?workers=N`` sets the thread count (default 4).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..facade import execution
from ..facade.adapter import Adapter, WorkerOptions
from ..facade.capabilities import Capabilities, Feature, native, unsupported
from ..facade.continuation import emulated_canvas
from ..facade.errors import ConfigurationError
from ..facade.records import ErrorInfo, Message, TaskResult
from ..facade.state import MemoryStateStore, Recorder
from ..facade.task import Task


class _Engine:
    def __init__(self, workers: int) -> None:
        self.recorder = Recorder(MemoryStateStore())
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="anytask-memory")
        self.lock = threading.Lock()
        self.claims: dict[str, str] = {}  # claim_unique (chord completion slots), never expire in-process


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
            **{f: unsupported("not wired in anytask yet for memory://") for f in (
                Feature.PRIORITY, Feature.CANCEL,
                Feature.RATE_LIMIT, Feature.UNIQUE, Feature.RESULT_TTL)},
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
            timer = threading.Timer(max(0.0, eta - time.time()), self._enqueue, (task, message.id, payload, 1))
            timer.daemon = True
            timer.start()
        else:
            self._enqueue(task, message.id, payload, 1)

    def _enqueue(self, task: Task[Any, Any], task_id: str, payload: str, attempt: int) -> None:
        if attempt > 1 or self.engine.recorder.read(task_id).status.value == "SCHEDULED":
            self.engine.recorder.store.write(task_id, {"status": "QUEUED"}, None)
        self.engine.pool.submit(self._run, task, task_id, payload, attempt)

    def _run(self, task: Task[Any, Any], task_id: str, payload: str, attempt: int) -> None:
        rec = self.engine.recorder
        data = json.loads(payload)
        rec.started(task_id, attempt)
        ctx = execution.TaskContext(task_id, task.name, attempt, lambda p: rec.progress(task_id, p), adapter=self)
        try:
            with execution.task_context(ctx):
                value = execution.call(task, data["args"], data["kwargs"])
        except Exception as exc:  # noqa: BLE001 - every task error is recorded
            retry = attempt <= task.options.retries
            rec.failed(task_id, ErrorInfo.from_exception(exc), will_retry=retry)
            if retry:
                delay = task.options.retry_backoff * (2 ** (attempt - 1))
                timer = threading.Timer(delay, self._enqueue, (task, task_id, payload, attempt + 1))
                timer.daemon = True
                timer.start()
            return
        rec.succeeded(task_id, json.loads(json.dumps(value)))

    def get(self, task_id: str) -> TaskResult:
        return self.engine.recorder.read(task_id)

    def claim_unique(self, key: str, task_id: str, ttl: float) -> str | None:
        """In-process SET NX (the chord emulation's completion slots); UNIQUE itself stays undeclared."""
        with self.engine.lock:
            holder = self.engine.claims.setdefault(key, task_id)
        return None if holder == task_id else holder

    def run_worker(self, tasks: Sequence[Task[Any, Any]], options: WorkerOptions) -> int:
        raise ConfigurationError("memory:// runs tasks inside the submitting process; it has no worker to start")

    # -- describe_worker (benchmark harness, issue 4) --
    def describe_worker(self, options: WorkerOptions) -> dict[str, Any]:
        n = self.engine.pool._max_workers  # the URL's workers=, not --concurrency (there is no worker)
        return {"pool": f"threads x{n} in the producer process", "processes": 0, "threads": n, "slots": n,
                "config": options.config, "knobs": {"workers": n}}
