"""The backends the suite runs over, and whether their services answer."""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..facade.url import parse_url

REDIS = os.environ.get("ANYTASK_TEST_REDIS", "127.0.0.1:6379")
AMQP = os.environ.get("ANYTASK_TEST_AMQP", "guest:guest@127.0.0.1:5672")
# Prepended to the RabbitMQ queue prefixes, so that two suites can share one RabbitMQ (Redis is
# shared the other way: give each suite its own server with ANYTASK_TEST_REDIS).
PREFIX = os.environ.get("ANYTASK_TEST_PREFIX", "")
_TMP = os.path.join(tempfile.gettempdir(), f"anytask-tests-{os.getuid()}")


@dataclass(frozen=True)
class BackendCase:
    id: str
    url: str

    def endpoints(self) -> list[tuple[str, int]]:
        """host:port pairs this backend needs (broker and result store)."""
        u = parse_url(self.url)
        out: list[tuple[str, int]] = []
        default_ports = {"redis": 6379, "amqp": 5672}
        if u.transport in default_ports:
            out.append((u.host or "127.0.0.1", u.port or default_ports[u.transport]))
        result = u.params.get("result")
        if result:
            r = urlsplit(result)
            out.append((r.hostname or "127.0.0.1", r.port or 6379))
        return out


def default_cases() -> list[BackendCase]:
    # Each backend has its own Redis database so that cases never see each other's keys.
    r, a = REDIS, AMQP
    return [
        BackendCase("memory", "memory://"),
        BackendCase("huey+sqlite", f"huey+sqlite:///{_TMP}/huey.db"),
        BackendCase("huey+redis", f"huey+redis://{r}/1"),
        BackendCase("rq+redis", f"rq+redis://{r}/2"),
        BackendCase("celery+redis", f"celery+redis://{r}/3"),
        BackendCase("celery+amqp", f"celery+amqp://{a}//?result=redis://{r}/4&prefix={PREFIX}t_celery."),
        BackendCase("dramatiq+redis", f"dramatiq+redis://{r}/5"),
        BackendCase("dramatiq+amqp", f"dramatiq+amqp://{a}/?result=redis://{r}/6&prefix={PREFIX}t_dramatiq."),
        BackendCase("taskiq+redis", f"taskiq+redis://{r}/7"),
        BackendCase("taskiq+amqp", f"taskiq+amqp://{a}/?result=redis://{r}/8&prefix={PREFIX}t_taskiq."),
    ]


def selected_cases() -> list[BackendCase]:
    """``ANYTASK_TEST_BACKENDS``: comma-separated ids (``rq+redis``) or ``id=url`` pairs; default all."""
    cases = {c.id: c for c in default_cases()}
    spec = os.environ.get("ANYTASK_TEST_BACKENDS", "").strip()
    if not spec:
        return list(cases.values())
    out = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" in item:
            cid, url = item.split("=", 1)
            out.append(BackendCase(cid, url))
        elif item in cases:
            out.append(cases[item])
        else:
            raise ValueError(f"ANYTASK_TEST_BACKENDS names unknown backend {item!r}; known: {', '.join(cases)}")
    return out


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def unreachable(case: BackendCase) -> str | None:
    """A reason if a service the case needs does not answer, else None."""
    for host, port in case.endpoints():
        if not answers(host, port):
            return f"{case.id}: nothing answers on {host}:{port}"
    return None


def workdir() -> str:
    os.makedirs(_TMP, exist_ok=True)
    return _TMP
