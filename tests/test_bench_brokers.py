"""``anytask brokers``: the Docker path's container specs (without an engine) and the local path for
real, on spare ports (never the shared services on 6379/5672)."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from anytask.bench import brokers
from anytask.bench.targets import answers

ROOT = Path(__file__).resolve().parents[1]


def spare_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(brokers, "STATE_DIR", str(tmp_path))
    return tmp_path


def test_docker_compose_file_matches_the_sdk_specs() -> None:
    assert (ROOT / "docker-compose.yml").read_text() == brokers.compose_text()


def test_container_specs() -> None:
    r = brokers.container_spec(brokers.REDIS, 16379)
    assert r["image"].startswith("redis:") and r["ports"] == {"6379/tcp": ("127.0.0.1", 16379)}
    assert r["detach"] is True and r["name"] == "anytask-redis-16379"
    assert "--appendonly" in r["command"]
    q = brokers.container_spec(brokers.RABBITMQ, 15672)
    assert q["image"].startswith("rabbitmq:") and q["ports"] == {"5672/tcp": ("127.0.0.1", 15672)}


class FakeContainers:
    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []
        self.removed: list[str] = []

    def run(self, **kw: Any) -> Any:
        self.runs.append(kw)
        return type("C", (), {"id": "c" + str(len(self.runs))})()

    def get(self, name: str) -> Any:
        if name not in [r["name"] for r in self.runs]:
            raise LookupError(name)  # docker.errors.NotFound
        removed = self.removed
        return type("C", (), {"remove": lambda self, force=False: removed.append(name)})()


class FakeDocker:
    def __init__(self) -> None:
        self.containers = FakeContainers()


def test_docker_path_runs_the_specs_and_down_removes_them(state_dir: Path) -> None:
    fake = FakeDocker()
    rp, ap = spare_port(), spare_port()
    lines: list[str] = []
    brokers.up({"redis": rp, "rabbitmq": ap}, prefer="docker", client=fake, timeout=0.3, echo=lines.append)
    assert fake.containers.runs == [brokers.container_spec(brokers.REDIS, rp),
                                    brokers.container_spec(brokers.RABBITMQ, ap)]
    assert set(brokers.load_state()) == {f"redis:{rp}", f"rabbitmq:{ap}"}
    brokers.down(client=fake, echo=lines.append)
    assert fake.containers.removed == [f"anytask-redis-{rp}", f"anytask-rabbitmq-{ap}"]
    assert brokers.load_state() == {}


def test_no_engine_and_no_binary_explains_what_to_install(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(brokers, "_binary", lambda svc: None)
    monkeypatch.setattr(brokers, "docker_client", lambda: None)
    lines: list[str] = []
    code = brokers.up({"redis": spare_port()}, echo=lines.append)
    assert code == 1 and "apt-get install" in lines[0] and "Docker" in lines[0]


@pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")
def test_local_redis_up_status_down_on_a_spare_port(state_dir: Path) -> None:
    port = spare_port()
    lines: list[str] = []
    try:
        assert brokers.up({"redis": port}, prefer="local", echo=lines.append) == 0
        assert answers("127.0.0.1", port)
        import redis

        assert redis.Redis(port=port).ping()
        lines.clear()
        brokers.status({"redis": port, "rabbitmq": spare_port()}, echo=lines.append)
        assert "answers (started by 'anytask brokers up' via local)" in lines[0]
    finally:
        brokers.down(echo=lines.append)
    assert not answers("127.0.0.1", port)
    assert brokers.load_state() == {}


@pytest.mark.skipif(not shutil.which("rabbitmq-server") or os.environ.get("ANYTASK_TEST_LOCAL_RABBITMQ") == "0",
                    reason="rabbitmq-server is not installed")
def test_local_rabbitmq_up_and_down_on_a_spare_port(state_dir: Path) -> None:
    port = spare_port()
    lines: list[str] = []
    try:
        assert brokers.up({"rabbitmq": port}, prefer="local", timeout=90, echo=lines.append) == 0, lines
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{port}/"))
        assert conn.is_open
        conn.close()
    finally:
        brokers.down(echo=lines.append)
    assert not answers("127.0.0.1", port)
