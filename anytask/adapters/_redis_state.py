"""A :class:`~anytask.facade.state.StateStore` in Redis, shared by the adapters that need one.

One hash per task id (``anytask:state:<id>`` under an optional prefix); each field holds JSON.
Writes merge fields and refresh the TTL in one round trip (a MULTI pipeline).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from ..facade.errors import BrokerUnavailable, credentials_refused
from ..facade.patience import FIRST_PAUSE, MAX_PAUSE, WORKER_PATIENCE
from ..facade.url import mask



@contextmanager
def broker_errors(what: str, url: str) -> Iterator[None]:
    """Turn redis-py connection errors into BrokerUnavailable naming the (masked) URL."""
    try:
        yield
    except redis.AuthenticationError as exc:  # before ConnectionError, its base class
        raise credentials_refused(what, "Redis", mask(url), mask(str(exc))) from None
    except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.InvalidResponse) as exc:
        raise BrokerUnavailable(f"{what}: Redis at {mask(url)} did not answer ({exc}); is it running? "
                                "Start one with 'anytask brokers up' or check the URL") from None


def connect(url: str, timeout: float, read_timeout: float | None = None) -> redis.Redis:
    """A client that connects within ``timeout``; each reply may take ``read_timeout`` (default
    max(timeout, 5 s), so a client shared with blocking reads is not cut off). Producers that must
    fail within the URL's timeout pass ``read_timeout=timeout``."""
    return redis.Redis.from_url(url, socket_connect_timeout=timeout,
                                socket_timeout=max(timeout, 5.0) if read_timeout is None else read_timeout,
                                health_check_interval=30)


def patient_redis_options(patience: float = WORKER_PATIENCE) -> dict[str, Any]:
    """redis-py connection options for a worker's writes that a library makes on its own (Dramatiq's
    Results, Huey's results): redis-py's own Retry reconnects with exponential backoff (0.1 s doubling
    to 5 s) for about ``patience`` seconds while Redis does not answer, so a task ending during a
    restart keeps its end. Clients never get these (they must fail within the URL's timeout)."""
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    retries, waited, pause = 0, 0.0, FIRST_PAUSE
    while waited < patience:
        retries, waited, pause = retries + 1, waited + pause, min(pause * 2, MAX_PAUSE)
    return {"retry": Retry(ExponentialBackoff(cap=MAX_PAUSE, base=FIRST_PAUSE), retries),
            "retry_on_error": [redis.ConnectionError, redis.TimeoutError]}


def patient_redis(url: str, timeout: float, patience: float = WORKER_PATIENCE) -> redis.Redis:
    """A worker's client with :func:`patient_redis_options`."""
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=max(timeout, 5.0),
                                health_check_interval=30, **patient_redis_options(patience))


class RedisStateStore:
    def __init__(self, client: redis.Redis, prefix: str = "anytask:state:", url: str = "") -> None:
        self.client = client
        self.prefix = prefix
        self.url = url

    def key(self, task_id: str) -> str:
        return self.prefix + task_id

    def write(self, task_id: str, fields: dict[str, Any], ttl: float | None) -> None:
        key = self.key(task_id)
        with broker_errors("writing task state", self.url):
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(key, mapping={k: json.dumps(v) for k, v in fields.items()})
            if ttl is not None:
                pipe.pexpire(key, max(1, int(ttl * 1000)))
            pipe.execute()

    def read(self, task_id: str) -> dict[str, Any] | None:
        with broker_errors("reading task state", self.url):
            raw = self.client.hgetall(self.key(task_id))
        if not raw:
            return None
        return {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in raw.items()}

    def delete(self, task_id: str) -> None:
        with broker_errors("deleting task state", self.url):
            self.client.delete(self.key(task_id))

    def purge(self) -> None:
        with broker_errors("purging task states", self.url):
            for key in self.client.scan_iter(match=self.prefix + "*", count=1000):
                self.client.delete(key)



    # -- unique keys (UNIQUE) ------------------------------------------------------------------
    def claim_unique(self, key: str, task_id: str, ttl: float) -> str | None:
        """Bind ``key`` to ``task_id`` unless bound: None if claimed now, else the id bound before."""
        k = f"{self.prefix}unique:{key}"
        with broker_errors("claiming a unique key", self.url):
            for _ in range(3):
                if self.client.set(k, task_id, nx=True, ex=max(1, int(ttl))):
                    return None
                existing = self.client.get(k)
                if existing is not None:
                    return existing.decode() if isinstance(existing, bytes) else str(existing)
        raise BrokerUnavailable(f"unique key {key!r} kept changing on {mask(self.url)}")

    def release_unique(self, key: str, task_id: str) -> None:
        with broker_errors("releasing a unique key", self.url):
            self.client.eval(_RELEASE_IF_OWNER, 1, f"{self.prefix}unique:{key}", task_id)


_RELEASE_IF_OWNER = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"

# A sliding-window limiter: at most ARGV[2] entries within ARGV[3] seconds; returns 0 when a slot was
# taken, else the seconds to wait before the oldest entry leaves the window.
_SLIDING_WINDOW = """
local now = tonumber(ARGV[1]); local limit = tonumber(ARGV[2]); local period = tonumber(ARGV[3])
redis.call('zremrangebyscore', KEYS[1], '-inf', now - period)
if redis.call('zcard', KEYS[1]) < limit then
  redis.call('zadd', KEYS[1], now, ARGV[4])
  redis.call('pexpire', KEYS[1], math.ceil(period * 1000) + 1000)
  return '0'
end
local oldest = redis.call('zrange', KEYS[1], 0, 0, 'withscores')
return tostring(tonumber(oldest[2]) + period - now)
"""


class RedisRateLimiter:
    """Cluster-wide "N starts per period" per name, for adapters whose library has no rate limit.

    ``acquire`` returns 0.0 when the caller may start now, else how long to wait; the caller
    re-schedules (or, if it must, sleeps) and asks again.
    """

    def __init__(self, client: redis.Redis, prefix: str = "anytask:rate:", url: str = "") -> None:
        self.client = client
        self.prefix = prefix
        self.url = url
        self._script = client.register_script(_SLIDING_WINDOW)

    def acquire(self, name: str, count: int, period: float, token: str) -> float:
        import time

        with broker_errors("taking a rate-limit slot", self.url):
            wait = self._script(keys=[self.prefix + name], args=[time.time(), count, period, token])
        return max(0.0, float(wait.decode() if isinstance(wait, bytes) else wait))
