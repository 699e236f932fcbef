"""The delivery guard's counter in Redis (see ``anytask.facade.execution.install_delivery_guard``).

One key per task id, ``anytask:deliveries:<namespace>:<id>``: INCR at each start, DEL when the start
finished in the worker; it expires with the state records. Fork-safe: the client is rebuilt in a
forked child (Celery's prefork pool, RQ's work horses).
"""

from __future__ import annotations

import os
from typing import Any

import redis

from ..facade.errors import ConfigurationError
from ..facade.execution import DEFAULT_MAX_DELIVERIES, install_delivery_guard
from ..facade.patience import patiently
from ..facade.state import DEFAULT_TTL
from ..facade.url import BackendURL


def max_deliveries(url: BackendURL) -> int:
    """The URL's ``max_deliveries`` (default 3): starts of one task allowed to end in a dead worker."""
    raw = url.params.get("max_deliveries", str(DEFAULT_MAX_DELIVERIES))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigurationError(f"max_deliveries must be a whole number >= 1 in {url.masked!r}, not {raw!r}")
    return value


def seconds_param(url: BackendURL, name: str) -> float | None:
    """A URL param holding a positive number of seconds (the redelivery clocks), None when absent."""
    raw = url.params.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds in {url.masked!r}, not {raw!r}")
    return value


class RedisDeliveryCounter:
    def __init__(self, redis_url: str, namespace: str, connect_timeout: float, ttl: float = DEFAULT_TTL) -> None:
        self.redis_url = redis_url
        self.prefix = f"anytask:deliveries:{namespace}:"
        self.connect_timeout = connect_timeout
        self.ttl = int(ttl)
        self._client: Any = None
        self._pid = 0

    @property
    def client(self) -> redis.Redis:
        if self._client is None or self._pid != os.getpid():
            t = self.connect_timeout
            self._client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=t, socket_timeout=max(t, 5.0))
            self._pid = os.getpid()
        return self._client  # type: ignore[no-any-return]

    def begin(self, task_id: str) -> int:
        def incr() -> int:
            with self.client.pipeline() as pipe:
                pipe.incr(self.prefix + task_id)
                pipe.expire(self.prefix + task_id, self.ttl)
                n, _ = pipe.execute()
            return int(n)

        # a start during a store restart waits for it (a refused connection ran nothing: no double count)
        return patiently(incr, f"counting a start of task {task_id}", retry_on=_DOWN)

    def end(self, task_id: str) -> None:
        patiently(lambda: self.client.delete(self.prefix + task_id), f"clearing the start count of task {task_id}",
                  retry_on=_DOWN)


_DOWN = (redis.ConnectionError, redis.TimeoutError)


def install_redis_guard(url: BackendURL, redis_url: str, namespace: str, connect_timeout: float) -> None:
    """Guard the tasks of this worker process with a counter in ``redis_url``."""
    install_delivery_guard(RedisDeliveryCounter(redis_url, namespace, connect_timeout), max_deliveries(url))
