"""The benchmarked backends, their isolated URLs and the services they need.

Isolation: every run has an id; queues are named ``bench_<run>``; Redis-based backends use a
dedicated database (``ANYTASK_BENCH_REDIS_DB``, default 15) that the harness flushes before and
after each measurement; AMQP backends get a per-run name prefix; huey+sqlite a per-run file.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from ..facade.backends import BACKENDS

REDIS = os.environ.get("ANYTASK_BENCH_REDIS", "127.0.0.1:6379")
AMQP = os.environ.get("ANYTASK_BENCH_AMQP", "guest:guest@127.0.0.1:5672")
REDIS_DB = int(os.environ.get("ANYTASK_BENCH_REDIS_DB", "15"))
# Databases a run may claim (conformance cases use 1-8, the RQ tests 9, the Celery tests 12, the
# probes 13-14). Each run takes one that no other live run holds, so flushing it before and after
# each session can never touch another run's keys.
REDIS_DBS = tuple(int(x) for x in os.environ.get("ANYTASK_BENCH_REDIS_DBS", "15,11,10").split(","))
LOCK_DB = int(os.environ.get("ANYTASK_BENCH_LOCK_DB", "0"))
LOCK_TTL = 900

ALL = tuple(BACKENDS)  # every scheme the facade knows, in its table's order
FALLBACK = ("huey+sqlite", "memory")


@dataclass(frozen=True)
class Isolation:
    run_id: str
    workdir: str
    redis: str = REDIS
    amqp: str = AMQP
    redis_db: int = REDIS_DB
    url_params: str = ""  # extra URL parameters for the facade URL (e.g. a scenario's redelivery timers)

    @property
    def queue(self) -> str:
        return f"bench_{self.run_id}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.redis}/{self.redis_db}"

    @property
    def amqp_url(self) -> str:
        return f"amqp://{self.amqp}/"


@dataclass(frozen=True)
class Target:
    id: str

    @property
    def library(self) -> str:
        return self.id.split("+")[0]

    @property
    def transport(self) -> str:
        return self.id.split("+")[1] if "+" in self.id else ""

    @property
    def broker(self) -> str:
        """The service whose raw floor this backend is compared with (redis, amqp, sqlite, memory)."""
        return self.transport or "memory"

    def uses_redis(self) -> bool:
        return self.transport in ("redis", "amqp")  # AMQP backends keep results in Redis

    def facade_url(self, iso: Isolation, slots: int) -> str:
        url = self._facade_url(iso, slots)
        if iso.url_params:
            url += ("&" if "?" in url else "?") + iso.url_params
        return url

    def _facade_url(self, iso: Isolation, slots: int) -> str:
        r, a = iso.redis, iso.amqp
        db = iso.redis_db
        if self.id == "memory":
            return f"memory://bench-{iso.run_id}?workers={slots}"
        if self.id == "huey+sqlite":
            return f"huey+sqlite:///{iso.workdir}/huey-{iso.run_id}.db"
        if self.transport == "redis":
            return f"{self.id}://{r}/{db}"
        if self.transport == "amqp":
            vhost = "//" if self.library == "celery" else "/"
            return f"{self.id}://{a}{vhost}?result=redis://{r}/{db}&prefix=bench{iso.run_id}."
        raise ValueError(f"unknown backend {self.id!r}")

    def endpoints(self, iso: Isolation) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        if self.uses_redis():
            host, _, port = iso.redis.rpartition(":")
            out.append((host, int(port)))
        if self.transport == "amqp":
            host, _, port = iso.amqp.rpartition("@")[2].rpartition(":")
            out.append((host, int(port)))
        return out


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def reachable(target: Target, iso: Isolation) -> bool:
    return all(answers(h, p) for h, p in target.endpoints(iso))


def parse_list(spec: str | None) -> list[Target]:
    if not spec:
        return []
    out = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        if item not in ALL:
            raise ValueError(f"unknown backend {item!r}; known: {', '.join(ALL)}")
        out.append(Target(item))
    return out


def default_targets(iso: Isolation) -> tuple[list[Target], bool]:
    """Every backend whose services answer; (fallback list, True) when no broker answers."""
    brokered = [Target(t) for t in ALL if Target(t).endpoints(iso)]
    live = [t for t in brokered if reachable(t, iso)]
    if not live:
        return [Target(t) for t in FALLBACK], True
    return [Target("memory"), Target("huey+sqlite"), *live], False


def _lock_client(iso: Isolation):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(f"redis://{iso.redis}/{LOCK_DB}", socket_connect_timeout=2, socket_timeout=5)


def claim_redis_db(iso: Isolation) -> int:
    """Claim a bench database for this run (a lock key with a TTL in ``LOCK_DB``); raise if none is free."""
    r = _lock_client(iso)
    try:
        for db in REDIS_DBS:
            if r.set(f"anytask:bench:lock:{db}", iso.run_id, nx=True, ex=LOCK_TTL):
                return db
        holders = {db: r.get(f"anytask:bench:lock:{db}") for db in REDIS_DBS}
    finally:
        r.close()
    raise RuntimeError(f"every bench Redis database is held by another running benchmark: {holders}; "
                       "wait for it or set ANYTASK_BENCH_REDIS_DBS")


def refresh_redis_db(iso: Isolation) -> None:
    r = _lock_client(iso)
    try:
        r.set(f"anytask:bench:lock:{iso.redis_db}", iso.run_id, ex=LOCK_TTL)
    finally:
        r.close()


def release_redis_db(iso: Isolation) -> None:
    r = _lock_client(iso)
    try:
        key = f"anytask:bench:lock:{iso.redis_db}"
        if (r.get(key) or b"").decode() == iso.run_id:
            r.delete(key)
    finally:
        r.close()
