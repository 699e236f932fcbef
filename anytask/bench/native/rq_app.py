"""RQ natively: ``Queue.enqueue(func, ...)``, ``Job.latest_result(timeout=...)`` (a blocking XREAD),
and ``rq worker-pool`` (``rq worker`` for one slot) as the worker.

Configured as anytask's RQ adapter configures it: ``defaults`` = RQ's own ``Worker`` (one forked
work horse per job), ``tuned`` = ``SimpleWorker`` (no fork per job) with ``--quiet``; SLOTS
worker processes through ``worker-pool --num-workers``. Natively RQ keeps its pickle serializer.
"""

from __future__ import annotations

import math
from typing import Any

from .. import work
from .base import NativeBase, cli


# The jobs name the shared bodies in anytask.bench.work themselves, not wrappers in this module: RQ's
# default worker forks a work horse per job and the horse imports the job's module, so that module must
# be as light as a user's task module (anytask.bench.work: ~10 ms in the horse; this module, through
# anytask.bench.native and the harness, ~50-120 ms, which RQ's defaults would pay on every job).
FUNCS = {"ping": work.ping, "noop": work.noop, "io": work.io, "cpu": work.cpu, "payload": work.payload,
         "gate": work.gate}
WORKER_CLASS = {"defaults": "rq.worker.Worker", "tuned": "rq.worker.SimpleWorker"}


class NativeDriver(NativeBase):
    library = "rq"

    def __init__(self, setup: Any) -> None:
        super().__init__(setup)
        import redis
        from rq import Queue

        self.redis = redis.Redis.from_url(self.broker_url, socket_connect_timeout=3, socket_timeout=30)
        self.q = Queue(self.queue, connection=self.redis)

    def describe(self) -> dict[str, Any]:
        fork = self.config == "defaults"
        return {"mode": "native", "pool": f"{'fork-per-job' if fork else 'simple'} worker x{self.setup.slots}",
                "processes": self.setup.slots, "threads": 1,
                "knobs": {"worker_class": WORKER_CLASS[self.config], "serializer": "pickle (RQ's default)"},
                "command": " ".join(self.worker_command(self.setup.slots))}

    def worker_command(self, concurrency: int) -> list[str]:
        common = ["--url", self.broker_url, "--worker-class", WORKER_CLASS[self.config]]
        if self.config == "tuned":
            common.append("--quiet")
        if concurrency == 1:
            return [cli("rq"), "worker", *common, "--with-scheduler", self.queue]
        return [cli("rq"), "worker-pool", *common, "--num-workers", str(concurrency), self.queue]

    def submit(self, task: str, bid: str, args: tuple[Any, ...]) -> Any:
        if task == "ping":
            return self.q.enqueue(work.ping)
        return self.q.enqueue(FUNCS[task], bid, *args)

    def wait(self, handle: Any, timeout: float) -> bool:
        res = handle.latest_result(timeout=max(1, math.ceil(timeout)))
        return res is not None

    def purge(self) -> None:
        try:
            self.q.empty()
        except Exception:  # noqa: BLE001, S110 - the bench database is flushed as well
            pass

    def close(self) -> None:
        self.redis.close()
