"""Test-owned brokers (anytask/testing/brokers.py) for real: data survives restart and kill -9, the
port stays the same, the shared services are never touched."""

from __future__ import annotations

import os

import pytest

from anytask.bench.targets import answers
from anytask.testing.brokers import SHARED_PORTS, OwnedRabbitMQ, OwnedRedis, pick_port, require


def test_redis_keeps_acknowledged_writes_across_restart_and_kill() -> None:
    import redis

    with require(OwnedRedis) as r:
        assert r.port not in SHARED_PORTS and r.running
        port = r.port
        c = redis.Redis(port=port, socket_timeout=5)
        c.set("before-restart", "1")
        c.rpush("queue", "a", "b")
        r.restart()
        assert r.port == port and c.get("before-restart") == b"1"
        c.set("before-kill", "2")  # appendfsync always: on disk before the reply
        r.kill()
        assert not answers("127.0.0.1", port, 0.3)
        with pytest.raises(redis.ConnectionError):
            c.ping()
        r.start()
        assert c.get("before-kill") == b"2" and c.lrange("queue", 0, -1) == [b"a", b"b"]
        assert len(r.boot_seconds) == 3
        workdir = r.workdir
    assert not answers("127.0.0.1", port, 0.3) and not os.path.exists(workdir)


def test_ports_come_from_the_configured_range(monkeypatch: pytest.MonkeyPatch) -> None:
    free = pick_port("NO_SUCH_VARIABLE")
    monkeypatch.setenv("ANYTASK_TEST_RANGE", f"{free}-{free}")
    assert pick_port("ANYTASK_TEST_RANGE") == free
    with pytest.raises(RuntimeError, match="no free port"):
        pick_port("ANYTASK_TEST_RANGE", exclude=(free,))
    with pytest.raises(ValueError, match="shared service"):
        OwnedRedis(port=6379)


def test_rabbitmq_keeps_durable_messages_across_restart_and_kill() -> None:
    import pika

    def publish_and_count(port: int, body: bytes | None) -> int:
        conn = pika.BlockingConnection(pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{port}/"))
        ch = conn.channel()
        ch.confirm_delivery()
        q = ch.queue_declare("owned-test", durable=True)
        if body is not None:
            ch.basic_publish("", "owned-test", body, pika.BasicProperties(delivery_mode=2))
            q = ch.queue_declare("owned-test", durable=True)
        conn.close()
        return int(q.method.message_count)

    with require(OwnedRabbitMQ) as q:
        port = q.port
        assert port not in SHARED_PORTS and q.dist_port != port
        assert publish_and_count(port, b"one") == 1
        q.restart()
        assert q.port == port and publish_and_count(port, b"two") == 2
        q.kill()  # published with confirms and delivery_mode 2: on disk
        assert not answers("127.0.0.1", port, 0.3)
        q.start()
        assert publish_and_count(port, None) == 2
        print(f"rabbitmq boot seconds: {[round(s, 1) for s in q.boot_seconds]}")
        assert len(q.boot_seconds) == 3
    assert not answers("127.0.0.1", port, 0.3)
