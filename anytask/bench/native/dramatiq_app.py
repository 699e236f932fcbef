"""Dramatiq natively: ``@dramatiq.actor``, ``actor.send(...)``, ``Message.get_result(block=True)``
and the ``dramatiq`` CLI as the worker.

Configured as anytask's Dramatiq adapter configures it: the broker's default middleware plus
``Results`` on a Redis backend; ``--processes 1 --threads SLOTS``; ``tuned`` sets the environment
``dramatiq_worker_timeout=100`` and ``dramatiq_queue_prefetch=4*SLOTS``.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

from .. import work
from .base import NativeBase, cli, delete_amqp_queues, settings


def build(s: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    if s["url"].startswith("amqp"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=s["url"])
    else:
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=s["url"] or "redis://127.0.0.1:6379/15")
    backend = RedisBackend(url=s["result"] or s["url"] or "redis://127.0.0.1:6379/15")
    broker.add_middleware(Results(backend=backend))
    broker.bench_backend = backend
    q = s["queue"]

    def actor(fn: Any) -> Any:
        return dramatiq.actor(fn, actor_name=f"bench_{fn.__name__}", queue_name=q, broker=broker,
                              store_results=True, max_retries=0)

    @actor
    def ping() -> str:
        return work.ping()

    @actor
    def noop(bid: str) -> None:
        work.noop(bid)

    @actor
    def io(bid: str, ms: float) -> None:
        work.io(bid, ms)

    @actor
    def cpu(bid: str, rounds: int) -> None:
        work.cpu(bid, rounds)

    @actor
    def payload(bid: str, blob: str) -> int:
        return work.payload(bid, blob)

    @actor
    def gate(bid: str, path: str, limit: float = 60.0) -> None:
        work.gate(bid, path, limit)

    return broker, {"ping": ping, "noop": noop, "io": io, "cpu": cpu, "payload": payload, "gate": gate}


_s = settings()
if _s["url"]:
    broker, TASKS = build(_s)
    dramatiq.set_broker(broker)


class NativeDriver(NativeBase):
    library = "dramatiq"

    def __init__(self, setup: Any) -> None:
        super().__init__(setup)
        self.broker, self.tasks = build(self.settings())

    def tuned_env(self, concurrency: int) -> dict[str, str]:
        if self.config != "tuned":
            return {}
        return {"dramatiq_worker_timeout": "100", "dramatiq_queue_prefetch": str(4 * concurrency)}

    def describe(self) -> dict[str, Any]:
        return {"mode": "native", "pool": f"threads x{self.setup.slots} (1 process)", "processes": 1,
                "threads": self.setup.slots, "knobs": {"env": self.tuned_env(self.setup.slots),
                                                       "max_retries": 0, "results": "RedisBackend"},
                "command": " ".join(self.worker_command(self.setup.slots))}

    def worker_env(self, concurrency: int | None = None) -> dict[str, str]:
        env = super().worker_env(concurrency)
        env.update(self.tuned_env(concurrency or self.setup.slots))
        return env

    def worker_command(self, concurrency: int) -> list[str]:
        return [cli("dramatiq"), __name__, "--processes", "1", "--threads", str(concurrency),
                "--queues", self.queue]

    def submit(self, task: str, bid: str, args: tuple[Any, ...]) -> Any:
        t = self.tasks[task]
        return t.send() if task == "ping" else t.send(bid, *args)

    def wait(self, handle: Any, timeout: float) -> bool:
        from dramatiq.results import ResultTimeout

        try:
            handle.get_result(backend=self.broker.bench_backend, block=True, timeout=int(timeout * 1000))
            return True
        except ResultTimeout:
            return False

    def purge(self) -> None:
        try:
            self.broker.flush_all()
        except Exception:  # noqa: BLE001, S110
            pass

    def close(self) -> None:
        if self.setup.target.transport == "amqp":
            delete_amqp_queues(self.broker_url, [self.queue, f"{self.queue}.DQ", f"{self.queue}.XQ"])
        try:
            self.broker.close()
        except Exception:  # noqa: BLE001, S110
            pass
