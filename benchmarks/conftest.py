"""Micro-benchmarks (pytest-benchmark), not part of ``make test`` (pytest's testpaths is tests/).

``make bench-micro`` runs them and writes results/reference/micro.json. Brokers come from the
bench harness's settings (ANYTASK_BENCH_REDIS, ANYTASK_BENCH_AMQP); a backend whose broker does
not answer is skipped. Each session claims one of the harness's Redis databases (the same lock
the harness uses), and purges and deletes what it enqueued afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator

import pytest

from anytask.bench.targets import Isolation, claim_redis_db, reachable, release_redis_db


@pytest.fixture(scope="session")
def iso() -> Iterator[Isolation]:
    work = tempfile.mkdtemp(prefix="anytask-micro-")
    base = Isolation(f"micro{uuid.uuid4().hex[:6]}", workdir=work)
    redis_up = reachable(_redis_target(), base)
    iso = Isolation(base.run_id, workdir=work, redis_db=claim_redis_db(base)) if redis_up else base
    try:
        yield iso
    finally:
        if redis_up:
            import redis

            client = redis.Redis.from_url(iso.redis_url)
            client.flushdb()
            client.close()
            release_redis_db(iso)
        try:
            from anytask.bench.cleanup import delete_amqp

            delete_amqp(iso.amqp_url, iso.run_id)
        except Exception:  # noqa: BLE001, S110 - no RabbitMQ, or nothing to delete
            pass
        shutil.rmtree(work, ignore_errors=True)


def _redis_target():  # type: ignore[no-untyped-def]
    from anytask.bench.targets import Target

    return Target("rq+redis")
