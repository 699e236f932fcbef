"""The workload bodies, shared by the facade tasks and every native task module.

Each takes a bench id ``bid`` first and stamps start and end around the work, so native and
facade runs execute the very same code.
"""

from __future__ import annotations

import hashlib
import os
import time

from .stamps import stamp

_BLOCK = b"\x5a" * 4096


def noop(bid: str) -> None:
    stamp("S", bid)
    stamp("E", bid)


def io(bid: str, ms: float) -> None:
    stamp("S", bid)
    time.sleep(ms / 1000.0)
    stamp("E", bid)


def cpu_rounds(ms: float) -> int:
    """sha256 updates of a 4 KiB block that take about ``ms`` on this machine (measured now).

    The harness calibrates once per run and passes the count as the task's argument, so every
    backend and mode hashes exactly the same amount.
    """
    t0 = time.perf_counter()
    n = 0
    h = hashlib.sha256()
    while time.perf_counter() - t0 < 0.05:
        for _ in range(100):
            h.update(_BLOCK)
        n += 100
    return max(1, int(n / ((time.perf_counter() - t0) * 1000) * ms))


def cpu(bid: str, rounds: int) -> None:
    stamp("S", bid)
    h = hashlib.sha256()
    for _ in range(rounds):
        h.update(_BLOCK)
    stamp("E", bid)


def payload(bid: str, blob: str) -> int:
    stamp("S", bid)
    n = len(blob)
    stamp("E", bid)
    return n


def gate(bid: str, path: str, limit: float = 60.0) -> None:
    """Hold one execution slot until ``path`` exists: lets the harness pre-fill a backlog."""
    stamp("S", bid)
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.002)
    stamp("E", bid)


def ping() -> str:
    return "pong"
