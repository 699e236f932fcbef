"""TaskiQ natively: ``@broker.task``, ``await task.kiq(...)``, ``await AsyncTaskiqTask.wait_result()``
and ``taskiq worker`` as the worker.

Configured as anytask's TaskiQ adapter configures it: ``RedisStreamBroker`` (consumer_id "0",
xread_count 100) or ``AioPikaBroker`` (qos 10, tuned 4*SLOTS) with ``RedisAsyncResultBackend``;
``--workers 1 --max-async-tasks SLOTS --max-threadpool-threads SLOTS --ack-type when_saved``; tuned
adds ``--max-prefetch SLOTS``. The sync producer drives TaskiQ's async API on a private event loop
thread. ``wait_result`` polls: TaskiQ's default ``check_interval`` is 0.2 s; tuned uses 0.005 s.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from taskiq import AsyncBroker
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from .. import work
from .base import NativeBase, cli, delete_amqp_queues, settings

CHECK_INTERVAL = {"defaults": 0.2, "tuned": 0.005}


def build(s: dict[str, str], concurrency: int = 2) -> tuple[AsyncBroker, dict[str, Any]]:
    result = s["result"] or s["url"] or "redis://127.0.0.1:6379/15"
    backend: RedisAsyncResultBackend[Any] = RedisAsyncResultBackend(result)
    broker: AsyncBroker
    if s["url"].startswith("amqp"):
        from taskiq_aio_pika import AioPikaBroker, Exchange, Queue

        broker = AioPikaBroker(s["url"], exchange=Exchange(name=f"{s['queue']}.taskiq"),
                               task_queues=[Queue(name=s["queue"])],
                               dead_letter_queue=Queue(name=f"{s['queue']}.dead_letter"),
                               qos=4 * concurrency if s["config"] == "tuned" else 10)
    else:
        broker = RedisStreamBroker(s["url"] or result, queue_name=s["queue"], consumer_id="0", xread_count=100)
    broker = broker.with_result_backend(backend)

    @broker.task(task_name="bench.ping")
    def ping() -> str:
        return work.ping()

    @broker.task(task_name="bench.noop")
    def noop(bid: str) -> None:
        work.noop(bid)

    @broker.task(task_name="bench.io")
    def io(bid: str, ms: float) -> None:
        work.io(bid, ms)

    @broker.task(task_name="bench.cpu")
    def cpu(bid: str, rounds: int) -> None:
        work.cpu(bid, rounds)

    @broker.task(task_name="bench.payload")
    def payload(bid: str, blob: str) -> int:
        return work.payload(bid, blob)

    @broker.task(task_name="bench.gate")
    def gate(bid: str, path: str, limit: float = 60.0) -> None:
        work.gate(bid, path, limit)

    return broker, {"ping": ping, "noop": noop, "io": io, "cpu": cpu, "payload": payload, "gate": gate}


_s = settings()
broker, TASKS = build(_s) if _s["url"] else (None, {})


class NativeDriver(NativeBase):
    library = "taskiq"

    def __init__(self, setup: Any) -> None:
        super().__init__(setup)
        self.broker, self.tasks = build(self.settings(), setup.slots)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-taskiq-loop", daemon=True)
        self.thread.start()
        self.call(self.broker.startup())
        self.interval = CHECK_INTERVAL[self.config]

    def call(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def describe(self) -> dict[str, Any]:
        return {"mode": "native", "pool": f"asyncio x{self.setup.slots} + {self.setup.slots} sync threads (1 process)",
                "processes": 1, "threads": self.setup.slots,
                "knobs": {"check_interval_s": CHECK_INTERVAL[self.config], "ack_type": "when_saved"},
                "command": " ".join(self.worker_command(self.setup.slots))}

    def worker_command(self, concurrency: int) -> list[str]:
        cmd = [cli("taskiq"), "worker", f"{__name__}:broker", "--workers", "1", "--max-async-tasks",
               str(concurrency), "--max-threadpool-threads", str(concurrency), "--ack-type", "when_saved"]
        return cmd + (["--max-prefetch", str(concurrency)] if self.config == "tuned" else [])

    def submit(self, task: str, bid: str, args: tuple[Any, ...]) -> Any:
        t = self.tasks[task]
        return self.call(t.kiq() if task == "ping" else t.kiq(bid, *args))

    def wait(self, handle: Any, timeout: float) -> bool:
        from taskiq.exceptions import TaskiqResultTimeoutError

        from taskiq.task import AsyncTaskiqTask

        # Trap: a handle keeps the result backend of the driver that submitted it, and that backend's
        # redis.asyncio pool belongs to that driver's event loop; waiting on it from another driver's
        # loop (the latency-steady waiter) fails ("Cannot find out if the task is ready"). Re-bind the
        # id to this driver's own backend.
        own = AsyncTaskiqTask(handle.task_id, self.broker.result_backend)
        try:
            self.call(own.wait_result(check_interval=self.interval, timeout=timeout))
            return True
        except TaskiqResultTimeoutError:
            return False

    def close(self) -> None:
        try:
            self.call(self.broker.shutdown(), 10)
        except Exception:  # noqa: BLE001, S110
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if self.setup.target.transport == "amqp":
            q = self.queue
            delete_amqp_queues(self.broker_url, [q, f"{q}.dead_letter"])
