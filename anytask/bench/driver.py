"""A driver runs one backend in one mode: start workers, submit a task, wait for its result.

:class:`FacadeDriver` goes through anytask (``anytask.connect`` + ``anytask worker``); the native
drivers in :mod:`anytask.bench.native` go through each library's own API and worker CLI.
"""

from __future__ import annotations

import abc
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import stamps
from .procs import Proc
from .targets import Isolation, Target

READY_TIMEOUT = float(os.environ.get("ANYTASK_BENCH_READY_TIMEOUT", "30"))
# Seconds a worker gets to exit on SIGTERM before its process group is SIGKILLed. Stopping happens
# after the measurements (nothing measured depends on a clean exit; queues and the bench database
# are purged afterwards), so the harness does not wait for each library's graceful shutdown.
STOP_GRACE = float(os.environ.get("ANYTASK_BENCH_STOP_GRACE", "0.2"))


class NotReady(RuntimeError):
    pass


@dataclass(frozen=True)
class Setup:
    """What a driver is asked to run: backend, configuration, slots and where things go."""

    target: Target
    config: str  # "defaults" | "tuned"
    slots: int
    iso: Isolation
    stamps_dir: str
    log_dir: str
    extra_env: dict[str, str] = field(default_factory=dict)


class Driver(abc.ABC):
    mode: str = ""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.procs: list[Proc] = []

    # -- declared configuration ------------------------------------------------------------
    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """Pool type, processes x threads, the knobs of this configuration and the worker command."""

    # -- workers ---------------------------------------------------------------------------
    def worker_env(self, concurrency: int | None = None) -> dict[str, str]:
        env = {**os.environ, stamps.ENV_DIR: self.setup.stamps_dir, **self.setup.extra_env}
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    @abc.abstractmethod
    def worker_command(self, concurrency: int) -> list[str] | None:
        """The worker command line, or None when tasks run in the producer process."""

    def start(self, processes: int = 1, concurrency: int | None = None) -> None:
        """Start ``processes`` workers of ``concurrency`` slots each and wait until one answers a ping."""
        conc = concurrency or self.setup.slots
        for i in range(processes):
            cmd = self.worker_command(conc)
            if cmd is None:
                break
            log = os.path.join(self.setup.log_dir, f"{self.setup.target.id}-{self.mode}-{self.setup.config}-{len(self.procs)}.log")
            self.procs.append(Proc(cmd, self.worker_env(conc), log).start())
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last: BaseException | None = None
        while time.monotonic() < deadline:
            for p in self.procs:
                if not p.alive():
                    raise NotReady(f"worker exited with {p.proc.returncode if p.proc else '?'} before it was "
                                   f"ready: {' '.join(p.cmd)}\n{p.output()}")
            try:
                h = self.submit("ping", "ping", ())
                if self.wait(h, min(5.0, max(0.5, deadline - time.monotonic()))):
                    return
            except Exception as exc:  # noqa: BLE001 - broker still starting
                last = exc
                time.sleep(0.2)
        out = "\n".join(p.output() for p in self.procs)
        raise NotReady(f"{self.setup.target.id} {self.mode} worker not ready after {READY_TIMEOUT}s ({last!r})\n{out}")

    def stop(self) -> None:
        """Stop every worker process group at once (SIGTERM, STOP_GRACE s, then SIGKILL)."""
        procs, self.procs = self.procs, []
        threads = [threading.Thread(target=p.stop, args=(STOP_GRACE,), daemon=True) for p in procs[1:]]
        for t in threads:
            t.start()
        if procs:
            procs[0].stop(STOP_GRACE)
        for t in threads:
            t.join()

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid]

    # -- producer --------------------------------------------------------------------------
    @abc.abstractmethod
    def submit(self, task: str, bid: str, args: tuple[Any, ...]) -> Any:
        """Enqueue ``task(bid, *args)``; return a handle for :meth:`wait`."""

    @abc.abstractmethod
    def wait(self, handle: Any, timeout: float) -> bool:
        """Block until the task's result is visible to the producer; False on timeout."""

    def producer_twin(self) -> Driver:
        """A second producer-side connection (no workers), for a thread that waits on results."""
        return type(self)(self.setup)

    def purge(self) -> None:
        """Drop waiting messages and records of this run (before and after each measurement)."""

    def close(self) -> None:
        pass


def python() -> str:
    return sys.executable


class FacadeDriver(Driver):
    """anytask's own API: ``Client.submit`` / ``Client.result`` and ``anytask worker``."""

    mode = "facade"

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        from anytask import connect

        from . import tasks

        self.url = setup.target.facade_url(setup.iso, setup.slots)
        self.client = connect(self.url)
        q = setup.iso.queue
        self.tasks = {name: getattr(tasks, name).using(queue=q)
                      for name in ("ping", "noop", "io", "cpu", "payload", "gate")}
        self.in_process = not self.client.capabilities.needs_worker
        if self.in_process:
            stamps.configure(setup.stamps_dir)

    def describe(self) -> dict[str, Any]:
        """The declared setup, from the adapter itself (``Adapter.describe_worker``) and the command."""
        from anytask import WorkerOptions

        opts = WorkerOptions(concurrency=self.setup.slots, queues=(self.setup.iso.queue,), config=self.setup.config)
        info: dict[str, Any] = {"mode": "facade", "url": self.client.url.masked,
                                **self.client.adapter.describe_worker(opts)}
        if not self.in_process:
            info["command"] = " ".join(self.worker_command(self.setup.slots) or [])
        return info

    def producer_twin(self) -> Driver:
        return self if self.in_process else FacadeDriver(self.setup)

    def worker_command(self, concurrency: int) -> list[str] | None:
        if self.in_process:
            return None
        return [python(), "-m", "anytask", "worker", self.url, "--tasks", "anytask.bench.tasks",
                "--concurrency", str(concurrency), "--queues", self.setup.iso.queue, "--config", self.setup.config]

    def submit(self, task: str, bid: str, args: tuple[Any, ...]) -> Any:
        t = self.tasks[task]
        if task == "ping":
            return self.client.submit(t)
        return self.client.submit(t, bid, *args)

    def wait(self, handle: Any, timeout: float) -> bool:
        from anytask import ResultTimeout

        try:
            handle.result(timeout=timeout)
            return True
        except ResultTimeout:
            return False

    def purge(self) -> None:
        try:
            self.client.adapter.purge([self.setup.iso.queue])
        except Exception:  # noqa: BLE001, S110 - best effort; the Redis db is flushed as well
            pass

    def close(self) -> None:
        if self.in_process:
            stamps.configure(None)
        self.client.close()
