"""``anytask demo``: submit a few tasks through every reachable backend and show what happens."""

from __future__ import annotations

import os
import tempfile
import time

from .facade.backends import BACKENDS
from .facade.client import Client
from .facade.errors import AnytaskError, TaskFailed
from .facade.url import mask
from .testing.backends import answers, BackendCase

REDIS = os.environ.get("ANYTASK_DEMO_REDIS", "127.0.0.1:6379")
AMQP = os.environ.get("ANYTASK_DEMO_AMQP", "guest:guest@127.0.0.1:5672")


def default_urls() -> list[str]:
    # One queue prefix per library: on a shared RabbitMQ vhost the libraries declare same-named queues
    # with different arguments, which RabbitMQ refuses.
    tmp = tempfile.gettempdir()
    r, a = REDIS, AMQP
    return [
        f"huey+sqlite:///{tmp}/anytask-demo-huey.db",
        f"huey+redis://{r}/9?prefix=demo_huey.",
        f"rq+redis://{r}/9?prefix=demo_rq.",
        f"celery+redis://{r}/10?prefix=demo_celery.",
        f"celery+amqp://{a}//?result=redis://{r}/9&prefix=demo_celery.",
        f"dramatiq+redis://{r}/11?prefix=demo_dramatiq.",
        f"dramatiq+amqp://{a}/?result=redis://{r}/9&prefix=demo_dramatiq.",
        f"taskiq+redis://{r}/12?prefix=demo_taskiq.",
        f"taskiq+amqp://{a}/?result=redis://{r}/9&prefix=demo_taskiq.",
    ]


def _line(backend: str, text: str) -> None:
    print(f"  {backend:<16} {text}", flush=True)


def demo_one(url: str) -> bool:
    from .testing import tasks
    from .testing.workers import WorkerProcess

    try:
        client = Client(url)
    except AnytaskError as exc:
        _line(url.split("://")[0], f"skipped: {exc}")
        return False
    name = client.backend
    worker = None
    try:
        client.adapter.purge(["default"])
        if client.capabilities.needs_worker:
            t0 = time.monotonic()
            worker = WorkerProcess(url, concurrency=2).start()
            worker.wait_ready(client, timeout=60)
            _line(name, f"worker ready in {time.monotonic() - t0:.1f}s (pid {worker.pid})")
        h = client.submit(tasks.add, 2, 3)
        first = h.status()
        t0 = time.monotonic()
        value = h.result(timeout=30)
        _line(name, f"add(2, 3) -> {value!r}   status {first.value} -> {h.status().value} "
                    f"in {1000 * (time.monotonic() - t0):.0f} ms   id {h.id}")
        f = client.submit(tasks.fail, "on purpose")
        try:
            f.result(timeout=30)
        except TaskFailed as exc:
            _line(name, f"fail()      -> TaskFailed {exc.exc_type}: {exc.message}   status {f.status().value}")
        hs = [client.submit(tasks.add, i, i) for i in range(50)]
        t0 = time.monotonic()
        ok = sum(1 for i, x in enumerate(hs) if x.result(timeout=60) == 2 * i)
        _line(name, f"50 x add    -> {ok}/50 correct in {time.monotonic() - t0:.2f}s")
        return True
    except AnytaskError as exc:
        _line(name, f"error: {mask(str(exc))}")
        return False
    except RuntimeError as exc:
        _line(name, f"worker failed: {mask(str(exc))[:500]}")
        return False
    finally:
        if worker is not None:
            worker.stop()
        try:
            client.adapter.purge(["default"])
        except AnytaskError:
            pass
        client.close()


def run_demo(urls: list[str]) -> int:
    chosen = urls or default_urls()
    reachable, missing = [], []
    for url in chosen:
        scheme = url.split("://", 1)[0]
        reason = None if scheme not in BACKENDS else _unreachable(url)
        (missing if reason else reachable).append((url, reason))
    print("anytask demo: the same tasks through every reachable backend\n")
    ok = 0
    for url, _ in reachable:
        ok += demo_one(url)
    for url, reason in missing:
        _line(url.split("://")[0], f"skipped: {reason}")
    if missing:
        print("\nStart the missing brokers with 'anytask brokers up' (Docker or local redis-server/rabbitmq-server),"
              " or 'docker compose up -d'.")
    print(f"\n{ok}/{len(reachable)} reachable backends worked.")
    return 0 if ok == len(reachable) and ok else 1


def _unreachable(url: str) -> str | None:
    from .testing.backends import unreachable

    return unreachable(BackendCase(url.split("://", 1)[0], url))


__all__ = ["run_demo", "default_urls", "answers"]
