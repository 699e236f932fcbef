"""The contract every backend implements. See docs/writing-an-adapter.md.

An adapter is constructed from a :class:`BackendURL`. On the producer side it enqueues a
:class:`Message` and reads a :class:`TaskResult`; on the worker side it starts the library's own
worker with the given tasks registered natively under their names.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .capabilities import Capabilities
from .errors import ResultTimeout, UnsupportedFeature
from .records import CancelResult, Message, TaskResult
from .schedule import Schedule
from .task import Task
from .url import BackendURL

if TYPE_CHECKING:
    from .beat import Beat

DEFAULT_CONNECT_TIMEOUT = 3.0


@dataclass(frozen=True)
class WorkerOptions:
    """How ``anytask worker`` asks an adapter to run its library's worker."""

    concurrency: int = 2
    queues: tuple[str, ...] = ("default",)
    config: str = "defaults"  # "defaults" | "tuned" | "reliable" (named configurations)
    extra: tuple[str, ...] = ()  # extra arguments passed through to the native worker CLI
    beat: bool = False  # also fire the declared periodic schedules (anytask worker --beat; docs/periodic.md)


class Adapter(abc.ABC):
    """Base class of the backends. Subclasses set ``capabilities`` and implement the abstract methods."""

    capabilities: ClassVar[Capabilities]

    def __init__(self, url: BackendURL) -> None:
        self.url = url
        self.connect_timeout = float(url.params.get("timeout", DEFAULT_CONNECT_TIMEOUT))

    @property
    def name(self) -> str:
        return self.url.scheme

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url.masked}>"

    # -- producer side -------------------------------------------------------------------
    @abc.abstractmethod
    def submit(self, task: Task[Any, Any], message: Message) -> None:
        """Enqueue ``message`` under ``message.id``; raise BrokerUnavailable if the broker does not answer."""

    @abc.abstractmethod
    def get(self, task_id: str) -> TaskResult:
        """The current state of ``task_id`` (``TaskResult.unknown`` if never seen). Must not consume the result."""

    def wait(self, task_id: str, timeout: float | None) -> TaskResult:
        """Block until the task is finished; default: poll ``get`` with a short backoff."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0005  # first re-check soon: fast tasks finish in well under a millisecond
        while True:
            res = self.get(task_id)
            if res.finished:
                return res
            if deadline is not None and time.monotonic() >= deadline:
                raise ResultTimeout(f"task {task_id} not finished after {timeout}s (status {res.status.value})")
            pause = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            delay = min(delay * 1.5, 0.05)

    async def asubmit(self, task: Task[Any, Any], message: Message) -> None:
        await asyncio.to_thread(self.submit, task, message)

    async def aget(self, task_id: str) -> TaskResult:
        return await asyncio.to_thread(self.get, task_id)

    async def await_(self, task_id: str, timeout: float | None) -> TaskResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0005  # first re-check soon: fast tasks finish in well under a millisecond
        while True:
            res = await self.aget(task_id)
            if res.finished:
                return res
            if deadline is not None and time.monotonic() >= deadline:
                raise ResultTimeout(f"task {task_id} not finished after {timeout}s (status {res.status.value})")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.05)

    def cancel(self, task_id: str) -> CancelResult:
        """Cancel a task: before it starts wherever possible, while it runs where the library can.

        The client checks the CANCEL capability first; adapters that declare it override this.
        """
        raise UnsupportedFeature(self.name, "cancel", "this adapter does not implement cancel")

    def claim_unique(self, key: str, task_id: str, ttl: float) -> str | None:
        """Atomically bind ``key`` to ``task_id`` for ``ttl`` seconds.

        Return None if the key was free (now bound to ``task_id``), else the id already bound to it.
        Adapters that declare UNIQUE override this (e.g. Redis ``SET NX EX``).
        """
        raise UnsupportedFeature(self.name, "unique", "this adapter does not implement unique keys")

    def release_unique(self, key: str, task_id: str) -> None:
        """Undo :meth:`claim_unique` when the enqueue that followed it failed."""

    def ping(self) -> None:
        """Raise BrokerUnavailable unless the broker (and state store) answer. Default: no check."""

    def close(self) -> None:
        """Release connections."""

    def purge(self, queues: Sequence[str] = ("default",)) -> None:
        """Drop every waiting message of ``queues`` and the records of the tasks that waited in them
        (tests, benchmarks). Records of finished or cancelled tasks stay until their TTL."""

    # -- worker side -----------------------------------------------------------------------
    def start_beat(self, schedules: Sequence[Schedule]) -> Beat | None:
        """Fire ``schedules`` beside the worker this process is about to run (``--beat``).

        Default: anytask's beat (facade/beat.py) in a thread of this process, claiming each fire
        with :meth:`claim_unique`. An adapter whose ``run_worker`` replaces this process (execve)
        returns None and starts the beat in the worker process when ``WorkerOptions.beat`` is set.
        """
        from .beat import Beat
        from .client import Client

        return Beat(Client(self.url), schedules).start()

    @abc.abstractmethod
    def run_worker(self, tasks: Sequence[Task[Any, Any]], options: WorkerOptions) -> int:
        """Run the library's own worker with ``tasks`` registered natively; return its exit code."""

    # -- describe_worker (benchmark harness, issue 4) --
    def describe_worker(self, options: WorkerOptions) -> dict[str, Any]:
        """What :meth:`run_worker` would start for ``options``, as data (optional; benchmarks record it).

        Keys: ``pool`` (one line, e.g. ``prefork x2``), ``processes`` (processes that execute tasks;
        0 when tasks run in the submitting process), ``threads`` (execution slots per process: threads,
        async slots or 1), ``slots``, ``config`` and ``knobs`` (the settings of this named configuration,
        e.g. the native worker's argv). The default derives what it can from ``options``; adapters
        override it to say what their library really runs.
        """
        return {"pool": f"the adapter's mapping of --concurrency {options.concurrency}", "processes": None,
                "threads": None, "slots": options.concurrency, "config": options.config,
                "knobs": {"extra": list(options.extra)} if options.extra else {}}
