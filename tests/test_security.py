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

import pytest

import anytask
from anytask.testing import tasks
from anytask.testing.backends import REDIS, answers
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


def test_pickle_in_celerys_own_queue_is_never_unpickled(tmp_path: Path) -> None:
    pytest.importorskip("celery")
    host, _, port = REDIS.rpartition(":")
    if not answers(host, int(port)):
        pytest.skip(f"no Redis on {REDIS}")
    url = f"celery+redis://{REDIS}/12"
    marker = tmp_path / f"unpickled-{uuid.uuid4().hex}"
    client = anytask.connect(url)
    client.adapter.purge(["default"])
    with WorkerProcess(url, concurrency=1) as worker:
        worker.wait_ready(client)
        app = client.adapter.app  # type: ignore[attr-defined]
        app.send_task("anytask.testing.tasks.echo", args=[Marker(str(marker))], serializer="pickle",
                      queue="default")  # Celery's native message, body pickled
        assert client.submit(tasks.add, 1, 1).result(timeout=30) == 2  # the worker went on serving
        time.sleep(1.0)
        out = worker.output()
    client.close()
    assert not marker.exists(), "the worker unpickled a message from the broker"
    assert "ContentDisallowed" in out or "content" in out.lower(), out[-2000:]


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
