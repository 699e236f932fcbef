"""Security (issue 7): JSON only on the wire, pickle from the broker never unpickled, passwords masked.

See docs/security.md. The pickle test puts a real pickle message into Celery's own queue in Celery's
native format (kombu with content type application/x-python-serialize) and shows the anytask
worker refuses it; for the other libraries the test checks statically that each adapter configures
a JSON serializer on both sides (producing a native pickle message for them needs the library's
pickle serializer, which the adapters never install).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import anytask
from anytask.testing import tasks
from anytask.testing.backends import AMQP, PREFIX, answers
from anytask.testing.workers import WorkerProcess

SECRET = "s3cr3t-pw"


class Marker:
    """Unpickling this creates ``path``: proof that someone unpickled broker data."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


# -- JSON only on the wire ---------------------------------------------------------------------------


def test_every_adapter_configures_json() -> None:
    pytest.importorskip("celery")
    from anytask.adapters import celery as ac, dramatiq as ad, huey as ah, rq as arq, taskiq as at

    conf = ac.CeleryAdapter(anytask.parse_url("celery+redis://127.0.0.1:1/0")).app.conf
    assert (conf.task_serializer, conf.result_serializer) == ("json", "json")
    assert list(conf.accept_content) == ["json"] and list(conf.result_accept_content) == ["json"]
    assert arq.SERIALIZER == "rq.serializers.JSONSerializer" and arq.JSONSerializer.__module__ == "rq.serializers"
    assert "serializer=JSONSerializer()" in Path(ah.__file__).read_text()  # every Huey instance the adapter builds
    with pytest.raises(TypeError, match="only JSON"):
        ah.JSONSerializer().serialize(Marker("/nonexistent/x"))
    assert "dramatiq.set_encoder(JSONEncoder())" in Path(ad.__file__).read_text()  # the worker's global encoder
    assert Path(ad.__file__).read_text().count("encoder=JSONEncoder()") >= 2  # both result backends
    from taskiq.serializers import JSONSerializer as TaskiqJSON

    broker = at.TaskiqAdapter(anytask.parse_url("taskiq+redis://127.0.0.1:1/0?timeout=1")).conf.broker()
    assert isinstance(broker.serializer, TaskiqJSON)  # taskiq's default, kept
    assert "serializer=JSONSerializer()" in Path(at.__file__).read_text()  # the result backend's


def _inject_celery(client: anytask.Client, marker: str) -> None:
    client.adapter.app.send_task("anytask.testing.tasks.echo", args=[Marker(marker)],  # type: ignore[attr-defined]
                                 serializer="pickle", queue=client.adapter._queue("default"))  # type: ignore[attr-defined]


def _inject_rq(client: anytask.Client, marker: str) -> None:
    from rq import Queue
    from rq.serializers import DefaultSerializer  # RQ's default: pickle

    Queue("default", connection=client.adapter.redis,  # type: ignore[attr-defined]
          serializer=DefaultSerializer).enqueue("anytask.testing.tasks.echo", Marker(marker))


def _inject_huey(client: anytask.Client, marker: str) -> None:
    import pickle

    client.adapter.huey("default").storage.enqueue(pickle.dumps(Marker(marker)))  # type: ignore[attr-defined]


def _inject_dramatiq(client: anytask.Client, marker: str) -> None:
    import dramatiq
    from dramatiq.encoder import PickleEncoder

    adapter: Any = client.adapter
    msg = dramatiq.Message(queue_name=adapter.native_queue("default"), actor_name="anytask.testing.tasks.echo",
                           args=(Marker(marker),), kwargs={}, options={})
    previous = dramatiq.get_encoder()
    dramatiq.set_encoder(PickleEncoder())  # only in this (producing) process, only for this message
    try:
        adapter._producer_broker().enqueue(msg)
    finally:
        dramatiq.set_encoder(previous)


def _inject_taskiq(client: anytask.Client, marker: str) -> None:
    import pickle

    import redis

    adapter: Any = client.adapter
    body = pickle.dumps({"task_id": uuid.uuid4().hex, "task_name": "anytask.testing.tasks.echo", "labels": {},
                         "args": [Marker(marker)], "kwargs": {}})
    redis.Redis.from_url(adapter.url.broker_url).xadd(adapter.conf.stream("default", None), {b"data": body})


# backend -> (how to put a pickle message into its own queue, what its worker logs when it refuses it)
_PICKLE_CASES = {
    "celery+redis": (_inject_celery, "Refusing to deserialize untrusted content of type pickle"),
    "rq+redis": (_inject_rq, "DeserializationError"),
    "huey+redis": (_inject_huey, "Error reading from queue"),
    "dramatiq+redis": (_inject_dramatiq, "bytes, never decoded further); moved to the dead-letter queue"),
    "dramatiq+amqp": (_inject_dramatiq, "Failed to decode message"),
    "taskiq+redis": (_inject_taskiq, "Cannot parse message"),
}


@pytest.mark.parametrize("backend", list(_PICKLE_CASES))
def test_pickle_in_the_librarys_own_queue_is_never_unpickled(backend: str, tmp_path: Path) -> None:
    """A pickle whose unpickling would create a file, put into the library's queue in its native
    format; the anytask worker refuses it, goes on serving, and the file never appears."""
    pytest.importorskip(backend.split("+")[0])
    from anytask.testing.brokers import OwnedRedis, require

    inject, refusal = _PICKLE_CASES[backend]
    marker = str(tmp_path / f"unpickled-{uuid.uuid4().hex}")
    with require(OwnedRedis) as r:
        redis_url = f"127.0.0.1:{r.port}/1"
        if backend.endswith("+amqp"):
            host, _, port = AMQP.rpartition("@")[2].rpartition(":")
            if not answers(host, int(port)):
                pytest.skip(f"no RabbitMQ on {AMQP}")
            url = f"{backend}://{AMQP}/?result=redis://{redis_url}&prefix={PREFIX}sec{uuid.uuid4().hex[:6]}."
        else:
            url = f"{backend}://{redis_url}"
        client = anytask.connect(url)
        try:
            with WorkerProcess(url, concurrency=1) as worker:
                worker.wait_ready(client)
                inject(client, marker)
                assert client.submit(tasks.add, 1, 1).result(timeout=30) == 2  # the worker went on serving
                deadline = time.monotonic() + 10
                while refusal not in worker.output() and time.monotonic() < deadline:
                    time.sleep(0.2)
                out = worker.output()
            assert not os.path.exists(marker), "the worker unpickled a message from the broker"
            assert refusal in out, out[-3000:]
            if backend == "rq+redis":  # RQ keeps the job: FAILED, saying why
                failed = [j for j in client.adapter.redis.keys("rq:job:*")]  # type: ignore[attr-defined]
                infos = [client.get(k.decode().rpartition(":")[2]) for k in failed]
                refused = [i for i in infos if i.status is anytask.Status.FAILED]
                assert len(refused) == 1 and refused[0].error is not None
                assert refused[0].error.type == "rq.exceptions.DeserializationError"
                assert refused[0].error.message.startswith("the job's data is not JSON: anytask's RQ worker reads only "
                                                           "JSON")
        finally:
            if backend.endswith("+amqp"):
                client.adapter.purge(["default"])
            client.close()


# -- credentials masked ------------------------------------------------------------------------------


def test_password_never_reaches_the_worker_log_or_errors() -> None:
    """A worker whose broker refuses the connection logs retries naming the URL: masked."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = s.getsockname()[1]
    s.close()
    for scheme in ("rq+redis", "celery+redis", "dramatiq+redis", "huey+redis", "taskiq+redis"):
        url = f"{scheme}://:{SECRET}@127.0.0.1:{closed}/0?timeout=1"
        w = WorkerProcess(url, concurrency=1).start()
        time.sleep(4.0)
        w.stop(timeout=10)
        out = w.output()
        assert SECRET not in out, f"{scheme} worker printed the password:\n{out[-3000:]}"
        with anytask.connect(url) as client:
            with pytest.raises(anytask.BrokerUnavailable) as ei:
                client.submit(tasks.add, 1, 2)
            assert SECRET not in str(ei.value) and SECRET not in repr(client) and SECRET not in repr(client.adapter)


def test_password_never_reaches_run_json(tmp_path: Path) -> None:
    """A tiny real bench run (RQ, native and facade) against a test-owned Redis reached with a password
    in its URL (Redis's default user accepts any): run.json, raw data and the output stay clean."""
    import subprocess
    import sys

    from anytask.testing.brokers import OwnedRedis, require

    with require(OwnedRedis) as r:
        out = subprocess.run(
            [sys.executable, "-m", "anytask", "bench", "run", "--profile", "quick", "--backends", "rq+redis",
             "--scenarios", "throughput-noop", "--n", "10", "--configs", "defaults", "--modes", "native,facade",
             "--no-ceilings", "--no-resources", "--no-report", "--out", str(tmp_path / "out")],
            capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1],
            env={**os.environ, "ANYTASK_BENCH_REDIS": f":{SECRET}@127.0.0.1:{r.port}"})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    doc = (tmp_path / "out" / "run.json").read_text()
    assert f":***@127.0.0.1:{r.port}" in doc  # the URLs are there, masked
    leaks = [p for p in (tmp_path / "out").rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaks == [] and SECRET not in out.stdout + out.stderr, leaks
