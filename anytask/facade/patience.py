"""A worker's writes wait out a short store outage instead of losing a task's end (issue 7).

A task that ends while Redis restarts ran, but if the write of its final state fails, the record
keeps saying RUNNING (or the library marks it FAILED with a ConnectionError) for ever. Workers
therefore retry such writes with exponential backoff for up to :data:`WORKER_PATIENCE` seconds;
a client never waits like this (``submit``/``status`` fail within the URL's timeout instead).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import BrokerAuthFailed, BrokerUnavailable

T = TypeVar("T")

WORKER_PATIENCE = 60.0  # seconds a worker retries a state/result write while its store is down
FIRST_PAUSE, MAX_PAUSE = 0.1, 5.0

log = logging.getLogger("anytask.worker")


def patiently(write: Callable[[], T], what: str, *, patience: float = WORKER_PATIENCE,
              retry_on: tuple[type[BaseException], ...] = (BrokerUnavailable,),
              sleep: Callable[[float], None] = time.sleep) -> T:
    """``write()``, retried while it raises one of ``retry_on`` (not a refused password) for up to
    ``patience`` seconds, pausing 0.1 s, 0.2 s, ... up to 5 s; then the last error is raised."""
    deadline = time.monotonic() + patience
    pause = FIRST_PAUSE
    warned = False
    while True:
        try:
            result = write()
        except BrokerAuthFailed:
            raise
        except retry_on as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                log.error("%s: the store stayed unavailable for %.0f s; giving up (%s)", what, patience, exc)
                raise
            if not warned:
                log.warning("%s: the store is unavailable (%s); retrying for up to %.0f s", what, exc, patience)
                warned = True
            sleep(min(pause, left))
            pause = min(pause * 2, MAX_PAUSE)
        else:
            if warned:
                log.warning("%s: written after the store came back", what)
            return result
