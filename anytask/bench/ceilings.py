"""Raw broker ceilings, measured in the same run: what no library on top can beat.

* ``redis-benchmark`` (when installed): LPUSH/RPOP with one client, pipeline 1 and 16.
* ``redis-py``: a minimal queue, LPUSH by the producer and BRPOP by a consumer process: enqueue
  rate, drain rate of a pre-filled list (the consumer is held by a "go" key while it fills) and a
  round-trip latency floor (LPUSH -> BRPOP -> LPUSH reply -> BRPOP).
* ``pika``: the same with a RabbitMQ queue, basic_publish and basic_consume with manual acks.

A library's figure divided by its broker's floor (``of_floor`` in the summary) shows how much of
the broker's raw speed the library keeps.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from typing import Any

from .metrics import percentile
from .targets import Isolation, Target


def redis_benchmark(iso: Isolation, n: int) -> dict[str, Any] | None:
    exe = shutil.which("redis-benchmark")
    if not exe:
        return None
    host, _, port = iso.redis.rpartition(":")
    out: dict[str, Any] = {}
    for p in (1, 16):
        cmd = [exe, "-h", host, "-p", port, "-c", "1", "-n", str(n), "-P", str(p), "-t", "lpush,rpop", "--csv",
               "--dbnum", str(iso.redis_db)]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            return {"error": repr(exc)}
        for row in csv.DictReader(io.StringIO(res.stdout)):
            out[f"{row['test'].lower()}_P{p}_rps"] = float(row["rps"])
            out[f"{row['test'].lower()}_P{p}_p50_ms"] = float(row["p50_latency_ms"])
    return out


# -- the consumer side runs in its own process: python -m anytask.bench.ceilings ... ---------------------


def _redis_consumer(url: str, q: str, n: int, mode: str) -> None:
    import redis

    r = redis.Redis.from_url(url)
    r.lpush(q + ":ready", "1")
    if mode == "drain":
        r.brpop([q + ":go"], timeout=60)
        t0 = time.monotonic()
        for _ in range(n):
            r.brpop([q], timeout=30)
        r.lpush(q + ":result", json.dumps({"drain_s": time.monotonic() - t0}))
    else:
        for _ in range(n):
            item = r.brpop([q], timeout=30)
            if item is None:
                break
            r.lpush(q + ":reply", item[1])


def _pika_consumer(url: str, q: str, n: int, mode: str) -> None:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.queue_declare(q, auto_delete=False)
    ch.queue_declare(q + ".reply", auto_delete=False)
    ch.basic_qos(prefetch_count=100)
    state = {"n": 0, "t0": 0.0}
    if mode == "drain":
        ch.queue_declare(q + ".go", auto_delete=False)
        ch.basic_publish("", q + ".reply", b"ready")
        while True:  # wait for the go message
            m = ch.basic_get(q + ".go", auto_ack=True)
            if m[0] is not None:
                break
            time.sleep(0.005)
        state["t0"] = time.monotonic()

        def on(chan: Any, method: Any, props: Any, body: bytes) -> None:
            chan.basic_ack(method.delivery_tag)
            state["n"] += 1
            if state["n"] >= n:
                chan.stop_consuming()
        ch.basic_consume(q, on)
        ch.start_consuming()
        ch.basic_publish("", q + ".reply", json.dumps({"drain_s": time.monotonic() - state["t0"]}).encode())
    else:
        ch.basic_publish("", q + ".reply", b"ready")

        def echo(chan: Any, method: Any, props: Any, body: bytes) -> None:
            chan.basic_publish("", q + ".reply", body)
            chan.basic_ack(method.delivery_tag)
            state["n"] += 1
            if state["n"] >= n:
                chan.stop_consuming()
        ch.basic_consume(q, echo)
        ch.start_consuming()
    conn.close()


def _spawn(kind: str, url: str, q: str, n: int, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "anytask.bench.ceilings", kind, url, q, str(n), mode],
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _finish(p: subprocess.Popen[bytes]) -> None:
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)


def raw_redis(iso: Isolation, n: int, samples: int) -> dict[str, Any]:
    import redis

    url = iso.redis_url
    r = redis.Redis.from_url(url)
    q = f"bench_{iso.run_id}:rawq"
    out: dict[str, Any] = {"n": n, "samples": samples}
    try:
        p = _spawn("redis", url, q, n, "drain")
        r.brpop([q + ":ready"], timeout=30)
        t0 = time.monotonic()
        for i in range(n):
            r.lpush(q, i)
        out["enqueue_rate"] = n / (time.monotonic() - t0)
        r.lpush(q + ":go", "1")
        res = r.brpop([q + ":result"], timeout=60)
        _finish(p)
        if res:
            out["throughput"] = n / json.loads(res[1])["drain_s"]
        p = _spawn("redis", url, q, samples, "echo")
        r.brpop([q + ":ready"], timeout=30)
        rtts = []
        for i in range(samples):
            t = time.monotonic()
            r.lpush(q, i)
            r.brpop([q + ":reply"], timeout=10)
            rtts.append((time.monotonic() - t) * 1000)
        _finish(p)
        out["latency_p50_ms"] = percentile(rtts, 50)
        out["latency_p99_ms"] = percentile(rtts, 99)
    finally:
        r.delete(q, q + ":ready", q + ":go", q + ":result", q + ":reply")
        r.close()
    return out


def raw_pika(iso: Isolation, n: int, samples: int) -> dict[str, Any]:
    import pika

    url = iso.amqp_url
    q = f"bench_{iso.run_id}.rawq"
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    out: dict[str, Any] = {"n": n, "samples": samples}

    def wait_reply(timeout: float = 30) -> bytes | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = ch.basic_get(q + ".reply", auto_ack=True)
            if m[0] is not None:
                return m[2]
            conn.sleep(0.0005)
        return None

    try:
        for name in (q, q + ".reply", q + ".go"):
            ch.queue_declare(name, auto_delete=False)
        p = _spawn("pika", url, q, n, "drain")
        wait_reply()
        t0 = time.monotonic()
        for i in range(n):
            ch.basic_publish("", q, str(i).encode())
        out["enqueue_rate"] = n / (time.monotonic() - t0)
        ch.basic_publish("", q + ".go", b"go")
        res = wait_reply(60)
        _finish(p)
        if res:
            out["throughput"] = n / json.loads(res)["drain_s"]
        p = _spawn("pika", url, q, samples, "echo")
        wait_reply()
        rtts = []
        for i in range(samples):
            t = time.monotonic()
            ch.basic_publish("", q, str(i).encode())
            wait_reply(10)
            rtts.append((time.monotonic() - t) * 1000)
        _finish(p)
        out["latency_p50_ms"] = percentile(rtts, 50)
        out["latency_p99_ms"] = percentile(rtts, 99)
        out["note"] = "reply read with basic_get polling (0.5 ms sleeps); transient messages"
    finally:
        for name in (q, q + ".reply", q + ".go"):
            try:
                ch.queue_delete(name)
            except Exception:  # noqa: BLE001, S110
                pass
        conn.close()
    return out


def measure(targets: Iterable[Target], iso: Isolation, quick: bool = True) -> dict[str, Any]:
    """The ceilings of the brokers the run's backends use (failures are recorded, not raised)."""
    transports = {t.transport for t in targets}
    n, samples = (5000, 200) if quick else (20000, 500)
    out: dict[str, Any] = {}
    if transports & {"redis", "amqp"}:
        for name, fn in (("redis-benchmark", lambda: redis_benchmark(iso, n * 4)),
                         ("redis-py", lambda: raw_redis(iso, n, samples))):
            try:
                res = fn()
                if res is not None:
                    out[name] = res
            except Exception as exc:  # noqa: BLE001
                out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    if "amqp" in transports:
        try:
            out["pika"] = raw_pika(iso, n // 2, samples)
        except Exception as exc:  # noqa: BLE001
            out["pika"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


if __name__ == "__main__":
    kind, url, q, n, mode = sys.argv[1:6]
    (_redis_consumer if kind == "redis" else _pika_consumer)(url, q, int(n), mode)
    os._exit(0)
