"""Stamps: every task is stamped at enqueue, start, end and result-seen on one host clock.

Workers append ``<kind> <bench-id> <time>`` lines to a file of their own process
(``<dir>/w-<pid>.stamps``) with one unbuffered ``write(2)`` on an ``O_APPEND`` descriptor: no
broker round trip, no lock, and a line is on disk even if the worker is killed afterwards. The
producer keeps its enqueue and result-seen stamps in memory. The harness merges everything
afterwards (and tails the files while it waits for a drain to finish).

Clock: :func:`time.monotonic`. On Linux it is ``CLOCK_MONOTONIC``, one system-wide clock shared
by every process on the host, and unlike ``time.time()`` it never steps when NTP or an admin sets
the wall clock, so an interval between a producer stamp and a worker stamp cannot jump. It is only
comparable on one host: brokers may run in containers, but producer and workers run here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

ENV_DIR = "ANYTASK_BENCH_DIR"

clock = time.monotonic

_state: dict[str, object] = {"pid": None, "fd": None, "dir": None, "configured": False}


def configure(directory: str | None) -> None:
    """Send this process's stamps to ``directory`` (None: stop stamping). Workers use the env var."""
    close()
    _state["dir"] = directory
    _state["configured"] = True


def close() -> None:
    fd = _state.get("fd")
    if isinstance(fd, int) and _state.get("pid") == os.getpid():
        try:
            os.close(fd)
        except OSError:
            pass
    _state["fd"] = None
    _state["pid"] = None


def _fd() -> int | None:
    pid = os.getpid()
    if _state["pid"] == pid:
        return _state["fd"]  # type: ignore[return-value]
    # first stamp of this process (or first after a fork): open our own file
    directory = _state["dir"] if _state["configured"] else os.environ.get(ENV_DIR)
    fd = None
    if directory:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(os.path.join(directory, f"w-{pid}.stamps"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    _state["pid"], _state["fd"] = pid, fd
    return fd


def stamp(kind: str, bid: str) -> None:
    """Record ``kind`` ("S" start, "E" end) for bench id ``bid`` now; a no-op outside a bench run."""
    fd = _fd()
    if fd is not None:
        os.write(fd, f"{kind} {bid} {clock():.9f}\n".encode())


@dataclass
class TaskStamps:
    """Everything stamped for one bench id."""

    enqueue: float | None = None
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    seen: float | None = None


def parse_lines(lines: Iterable[str], into: dict[str, TaskStamps]) -> int:
    """Merge worker stamp lines into ``into``; return how many E lines were read."""
    ends = 0
    for line in lines:
        parts = line.split()
        if len(parts) != 3:
            continue
        kind, bid, t = parts
        rec = into.get(bid)
        if rec is None:
            rec = into[bid] = TaskStamps()
        if kind == "S":
            rec.starts.append(float(t))
        elif kind == "E":
            rec.ends.append(float(t))
            ends += 1
    return ends


class StampReader:
    """Tails every ``*.stamps`` file of a directory, reading only complete new lines."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.offsets: dict[str, int] = {}
        self.partial: dict[str, bytes] = {}
        self.stamps: dict[str, TaskStamps] = {}
        self.end_lines = 0

    def poll(self) -> int:
        """Read what was appended since the last poll; return the total number of E lines so far."""
        try:
            names = [n for n in os.listdir(self.directory) if n.endswith(".stamps")]
        except FileNotFoundError:
            return self.end_lines
        for name in names:
            path = os.path.join(self.directory, name)
            off = self.offsets.get(name, 0)
            with open(path, "rb") as fh:
                fh.seek(off)
                data = fh.read()
            if not data:
                continue
            self.offsets[name] = off + len(data)
            data = self.partial.pop(name, b"") + data
            head, sep, tail = data.rpartition(b"\n")
            if tail:
                self.partial[name] = tail
            if sep:
                self.end_lines += parse_lines(head.decode().splitlines(), self.stamps)
        return self.end_lines

    def ended(self, bids: Iterable[str]) -> int:
        """How many of ``bids`` have at least one end stamp."""
        return sum(1 for b in bids if (r := self.stamps.get(b)) is not None and r.ends)


def instrumentation_cost(directory: str, n: int = 20000) -> float:
    """Seconds one task's stamping costs a worker (a start and an end stamp), measured here."""
    configure(directory)
    try:
        t0 = time.perf_counter()
        for i in range(n):
            stamp("S", "cost")
            stamp("E", "cost")
        return (time.perf_counter() - t0) / n
    finally:
        configure(None)
        try:
            os.remove(os.path.join(directory, f"w-{os.getpid()}.stamps"))
        except OSError:
            pass
