"""Celery natively: ``@app.task``, ``apply_async(queue=...)``, ``AsyncResult.get(timeout=...)`` and
``celery -A ... worker`` as the worker.

Configured as anytask's Celery adapter configures it: a Redis result backend (Celery has none by
default), prefork pool with SLOTS children; ``tuned`` adds ``--without-mingle --without-gossip
--without-heartbeat --prefetch-multiplier=16``. Everything else is Celery's default (JSON).
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from .. import work
from .base import NativeBase, cli, delete_amqp_queues, settings


def build(s: dict[str, str]) -> tuple[Celery, dict[str, Any]]:
    app = Celery("bench", broker=s["url"] or None, backend=s["result"] or None, set_as_current=False)
    app.conf.update(task_default_queue=s["queue"], broker_connection_retry_on_startup=True,
                    worker_hijack_root_logger=False)

    @app.task(name="bench.ping")
    def ping() -> str:
        return work.ping()

    @app.task(name="bench.noop")
    def noop(bid: str) -> None:
        work.noop(bid)

    @app.task(name="bench.io")
    def io(bid: str, ms: float) -> None:
        work.io(bid, ms)

    @app.task(name="bench.cpu")
    def cpu(bid: str, rounds: int) -> None:
        work.cpu(bid, rounds)

    @app.task(name="bench.payload")
    def payload(bid: str, blob: str) -> int:
        return work.payload(bid, blob)

    @app.task(name="bench.gate")
    def gate(bid: str, path: str, limit: float = 60.0) -> None:
        work.gate(bid, path, limit)

    return app, {"ping": ping, "noop": noop, "io": io, "cpu": cpu, "payload": payload, "gate": gate}


app, TASKS = build(settings())

TUNED = ["--without-mingle", "--without-gossip", "--without-heartbeat", "--prefetch-multiplier=16"]


class NativeDriver(NativeBase):
    library = "celery"

    def __init__(self, setup: Any) -> None:
        super().__init__(setup)
        self.app, self.tasks = build(self.settings())

    def describe(self) -> dict[str, Any]:
        return {"mode": "native", "pool": f"prefork x{self.setup.slots}", "processes": self.setup.slots,
                "threads": 1, "knobs": {"flags": TUNED if self.config == "tuned" else [],
                                        "result_backend": self.result_url},
                "command": " ".join(self.worker_command(self.setup.slots))}

    def worker_command(self, concurrency: int) -> list[str]:
        cmd = [cli("celery"), "-A", __name__, "worker", "--pool=prefork", f"--concurrency={concurrency}",
               "-Q", self.queue, "--loglevel=WARNING", f"--hostname=bench-{len(self.procs)}-{self.queue}@%h"]
        return cmd + (TUNED if self.config == "tuned" else [])

    def submit(self, task: str, bid: str, args: tuple[Any, ...]) -> Any:
        t = self.tasks[task]
        return t.apply_async((), queue=self.queue) if task == "ping" else t.apply_async((bid, *args), queue=self.queue)

    def wait(self, handle: Any, timeout: float) -> bool:
        from celery.exceptions import TimeoutError as CeleryTimeout

        try:
            handle.get(timeout=timeout, disable_sync_subtasks=False)
            return True
        except CeleryTimeout:
            return False

    def purge(self) -> None:
        try:
            with self.app.connection_for_write() as conn:
                conn.default_channel.queue_purge(self.queue)
        except Exception:  # noqa: BLE001, S110 - absent queue; the Redis db is flushed anyway
            pass

    def close(self) -> None:
        if self.setup.target.transport == "amqp":
            delete_amqp_queues(self.broker_url, [self.queue])
        try:
            self.app.close()
        except Exception:  # noqa: BLE001, S110
            pass
