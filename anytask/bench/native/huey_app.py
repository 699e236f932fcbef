"""Huey natively: ``@huey.task()``, calling the task enqueues, ``Result.get(blocking=True)``, and
``huey_consumer`` as the worker.

Configured as anytask's Huey adapter configures it: one Huey instance named after the queue,
``results=True, store_none=True, utc=True``; consumer with ``-w SLOTS -k process``; ``tuned``
adds ``-d 0.05 -m 1.0`` (faster polling of SQLite), as the adapter's tuned preset, and on Redis
``notify_result=True`` (results are pushed to a waiting BLPOP instead of polled). Natively Huey
keeps its own pickle serializer; PriorityRedisExpireHuey for Redis (the adapter's class).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from huey import PriorityRedisExpireHuey, SqliteHuey

from .. import work
from .base import NativeBase, cli, settings


def build(s: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    if s["url"].startswith("sqlite://"):
        huey = SqliteHuey(s["queue"], filename=urlsplit(s["url"]).path, results=True, store_none=True, utc=True)
    else:
        # tuned: notify_result=True makes Result.get(blocking=True) wait on a Redis BLPOP instead of
        # polling with a backoff (huey 3's RedisStorage option).
        huey = PriorityRedisExpireHuey(s["queue"], url=s["url"], results=True, store_none=True, utc=True,
                               expire_time=7 * 24 * 3600, notify_result=s["config"] == "tuned")

    @huey.task(name="bench.ping")
    def ping() -> str:
        return work.ping()

    @huey.task(name="bench.noop")
    def noop(bid: str) -> None:
        work.noop(bid)

    @huey.task(name="bench.io")
    def io(bid: str, ms: float) -> None:
        work.io(bid, ms)

    @huey.task(name="bench.cpu")
    def cpu(bid: str, rounds: int) -> None:
        work.cpu(bid, rounds)

    @huey.task(name="bench.payload")
    def payload(bid: str, blob: str) -> int:
        return work.payload(bid, blob)

    @huey.task(name="bench.gate")
    def gate(bid: str, path: str, limit: float = 60.0) -> None:
        work.gate(bid, path, limit)

    return huey, {"ping": ping, "noop": noop, "io": io, "cpu": cpu, "payload": payload, "gate": gate}


_s = settings()
huey, TASKS = build(_s) if _s["url"] else (None, {})

CONSUMER = {"defaults": [], "tuned": ["-d", "0.05", "-m", "1.0"]}


class NativeDriver(NativeBase):
    library = "huey"

    def __init__(self, setup: Any) -> None:
        super().__init__(setup)
        self.huey, self.tasks = build(self.settings())

    def describe(self) -> dict[str, Any]:
        return {"mode": "native", "pool": f"process x{self.setup.slots}", "processes": self.setup.slots,
                "threads": 1, "knobs": {"consumer": CONSUMER[self.config], "results": True, "store_none": True,
                                        "notify_result": self.config == "tuned" and self.broker_url.startswith("redis"),
                                        "serializer": "pickle (Huey's default)"},
                "command": " ".join(self.worker_command(self.setup.slots))}

    def worker_command(self, concurrency: int) -> list[str]:
        return [cli("huey_consumer"), f"{__name__}.huey", "-w", str(concurrency), "-k", "process",
                *CONSUMER[self.config]]

    def submit(self, task: str, bid: str, args: tuple[Any, ...]) -> Any:
        if task == "ping":
            return self.tasks["ping"]()
        return self.tasks[task](bid, *args)

    def wait(self, handle: Any, timeout: float) -> bool:
        from huey.exceptions import ResultTimeout

        try:
            handle.get(blocking=True, timeout=timeout)
            return True
        except ResultTimeout:
            return False

    def purge(self) -> None:
        try:
            self.huey.flush()
        except Exception:  # noqa: BLE001, S110
            pass

    def close(self) -> None:
        try:
            self.huey.storage.close()
        except Exception:  # noqa: BLE001, S110
            pass
