"""Test-owned, persistent Redis and RabbitMQ instances that a test may restart, kill or stop.

Never the shared services: each instance runs the local ``redis-server`` / ``rabbitmq-server`` binary
(started by :func:`anytask.bench.brokers.local_spawn`, the code ``anytask brokers up`` uses) on a port
of its own, with its data in a temp dir of its own, so a restart comes back on the same data and port.

Usage (a context manager, or the pytest fixtures below)::

    from anytask.testing.brokers import owned_redis, owned_rabbitmq

    with owned_redis() as r:              # appendonly yes + appendfsync always, spare port
        url = f"rq+redis://127.0.0.1:{r.port}/0"   # r.url is redis://127.0.0.1:PORT/0
        ...
        r.restart()                       # SIGTERM, wait, start again on the same dir and port
        r.kill(); r.start()               # SIGKILL (a crash), then start on the same data
        r.stop()                          # the context exit stops it and removes the dir
    with owned_rabbitmq() as q:           # own node (RABBITMQ_NODENAME anytask<port>@localhost),
        q.amqp                            # guest:guest@127.0.0.1:PORT (for an anytask URL)
        q.boot_seconds                    # wall time of each start until it answered AMQP

Ports: ``port=`` if given, else the first free port of ``$ANYTASK_OWNED_REDIS_PORTS`` /
``$ANYTASK_OWNED_AMQP_PORTS`` (a range ``6410-6419``; parallel suites give each other disjoint ranges),
else any spare port. RabbitMQ's Erlang distribution port is ``$ANYTASK_OWNED_DIST_PORTS`` or spare.
A missing binary raises :class:`BrokerBinaryMissing`; :func:`require` turns that into a skip locally
and a failure under ``CI=true`` (like the conformance plugin).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..bench import brokers as _bench
from ..bench.targets import answers

SHARED_PORTS = frozenset({6379, 5672})  # the shared services: never started, stopped or killed here


class BrokerBinaryMissing(RuntimeError):
    """The broker's binary is not installed."""


class BrokerDidNotStart(RuntimeError):
    """The broker did not answer in time (its log is in the message)."""


def _free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pick_port(env: str, exclude: tuple[int, ...] = ()) -> int:
    """The first free port of the range in ``$env`` (``LOW-HIGH``), else a spare port."""
    spec = os.environ.get(env, "").strip()
    if spec:
        low, _, high = spec.partition("-")
        for port in range(int(low), int(high or low) + 1):
            if port not in SHARED_PORTS and port not in exclude and _free(port):
                return port
        raise RuntimeError(f"no free port in ${env}={spec}: stop what holds them or widen the range")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_ready(port: int) -> bool:
    """PING answers PONG (a Redis still loading its AOF answers -LOADING)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _amqp_ready(port: int) -> bool:
    """The broker sends Connection.Start (a method frame) after the AMQP 0-9-1 protocol header."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"AMQP\x00\x00\x09\x01")
            return s.recv(8)[:1] == b"\x01"
    except OSError:
        return False


class OwnedBroker:
    """One persistent broker process of this test run: ``start``, ``restart``, ``kill``, ``stop``."""

    name = ""
    start_timeout = 30.0

    def __init__(self, port: int | None = None, workdir: str | None = None) -> None:
        if not shutil.which(self.binary):
            raise BrokerBinaryMissing(f"{self.binary} is not installed: apt-get install {self.package} "
                                      f"(or brew install {self.name})")
        self.port = port if port is not None else pick_port(self.port_env)
        if self.port in SHARED_PORTS:
            raise ValueError(f"port {self.port} is a shared service's: test-owned brokers use other ports")
        self._own_dir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix=f"anytask-owned-{self.name}-{self.port}-")
        os.chmod(self.workdir, 0o755)  # RabbitMQ run by root re-runs itself as user 'rabbitmq'
        self.boot_seconds: list[float] = []
        self._entry: dict[str, Any] | None = None

    binary = ""
    package = ""
    port_env = ""

    @property
    def service(self) -> _bench.Service:
        return _bench.REDIS if self.name == "redis" else _bench.RABBITMQ

    @property
    def url(self) -> str:
        return self.service.url(self.port)

    @property
    def running(self) -> bool:
        return self._entry is not None

    def _spawn(self) -> dict[str, Any]:
        return _bench.local_spawn(self.service, self.port, self.workdir, persistent=True)

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> OwnedBroker:
        """Start on the work dir's data and wait until it answers; records the boot time."""
        if self._entry is not None:
            raise RuntimeError(f"{self.name} on port {self.port} is already running")
        if answers("127.0.0.1", self.port, 0.3):
            raise RuntimeError(f"something else already listens on 127.0.0.1:{self.port}")
        t0 = time.monotonic()
        self._entry = self._spawn()
        deadline = t0 + self.start_timeout
        while time.monotonic() < deadline:
            if self._ready():
                self.boot_seconds.append(time.monotonic() - t0)
                return self
            if not _bench._alive(self._entry["pid"]) and not _bench._node_pids(self._entry.get("node")):
                break
            time.sleep(0.1)
        log = self.log_tail()
        self.kill()
        raise BrokerDidNotStart(f"{self.name} did not answer on 127.0.0.1:{self.port} within "
                                f"{self.start_timeout:.0f}s; log ({self.workdir}):\n{log}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a clean shutdown, data kept), SIGKILL whatever is left after ``timeout``."""
        if self._entry is not None:
            _bench.local_down(self._entry, timeout)
            self._entry = None

    def kill(self) -> None:
        """SIGKILL every process of the broker (a crash); the data dir stays for :meth:`start`."""
        if self._entry is not None:
            _bench.local_down(self._entry, signals=(signal.SIGKILL,))
            self._entry = None

    def restart(self, *, crash: bool = False, down_for: float = 0.0) -> None:
        """Stop (or kill, ``crash=True``), stay down ``down_for`` seconds, start on the same data and port."""
        self.kill() if crash else self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()

    def close(self) -> None:
        """Stop and remove the data dir (if this object made it)."""
        self.stop()
        if self._own_dir and not os.environ.get("ANYTASK_BROKERS_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        out = []
        for root, _, files in os.walk(self.workdir):
            for f in files:
                if f.endswith(".log"):
                    try:
                        with open(os.path.join(root, f), errors="replace") as fh:
                            out.append(f"--- {f}\n{fh.read()[-chars:]}")
                    except OSError:
                        pass
        return "\n".join(out)[-2 * chars:]

    def __enter__(self) -> OwnedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class OwnedRedis(OwnedBroker):
    """``redis-server --appendonly yes --appendfsync always``: an acknowledged write survives kill -9."""

    name, binary, package, port_env = "redis", "redis-server", "redis-server", "ANYTASK_OWNED_REDIS_PORTS"

    def _ready(self) -> bool:
        return _redis_ready(self.port)

    def redis_url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


class OwnedRabbitMQ(OwnedBroker):
    """A RabbitMQ node of its own (node name, AMQP and distribution ports, mnesia, logs, config and
    enabled-plugins files in the work dir; the system's Erlang cookie). Durable queues and persistent
    messages survive a restart. Booting takes seconds: see ``boot_seconds``."""

    name, binary, package, port_env = "rabbitmq", "rabbitmq-server", "rabbitmq-server", "ANYTASK_OWNED_AMQP_PORTS"
    start_timeout = 120.0

    def __init__(self, port: int | None = None, workdir: str | None = None, dist_port: int | None = None) -> None:
        super().__init__(port, workdir)
        self.dist_port = dist_port or pick_port("ANYTASK_OWNED_DIST_PORTS")

    def _spawn(self) -> dict[str, Any]:
        return _bench.local_spawn(self.service, self.port, self.workdir, persistent=True, dist_port=self.dist_port)

    def _ready(self) -> bool:
        return _amqp_ready(self.port)

    @property
    def amqp(self) -> str:
        """``guest:guest@127.0.0.1:PORT``, the authority part of an anytask AMQP URL."""
        return f"guest:guest@127.0.0.1:{self.port}"


@contextmanager
def owned_redis(port: int | None = None) -> Iterator[OwnedRedis]:
    with OwnedRedis(port) as r:
        yield r  # type: ignore[misc]


@contextmanager
def owned_rabbitmq(port: int | None = None) -> Iterator[OwnedRabbitMQ]:
    with OwnedRabbitMQ(port) as q:
        yield q  # type: ignore[misc]


def require(kind: type[OwnedBroker], **kw: Any) -> OwnedBroker:
    """Construct ``kind``; a missing binary skips the test locally and fails it under ``CI=true``."""
    import pytest

    try:
        return kind(**kw)
    except BrokerBinaryMissing as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"broker binary missing under CI: {exc}")
        pytest.skip(str(exc))
