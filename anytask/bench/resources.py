"""CPU and memory of the worker process tree, the producer and the brokers (psutil, >= 2 samples/s).

Imported only by the harness (psutil is an optional dependency: ``anytask[bench]``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

INTERVAL = 0.25  # 4 samples per second
FLAT = {"producer"}  # the producer's children are the workers: count the producer process alone


def _tree(pid: int, recursive: bool = True) -> list[Any]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)] if recursive else [root]
    except psutil.Error:
        return []


def _cpu(procs: list[Any], children: bool = True) -> float:
    """CPU seconds of ``procs``, with the reaped children of each (forked job processes) if asked."""
    import psutil

    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
            if children:
                total += getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
        except psutil.Error:
            pass
    return total


def _rss(procs: list[Any]) -> float:
    import psutil

    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def broker_pids() -> dict[str, int]:
    """Local redis-server and RabbitMQ (beam.smp) processes, if any are visible."""
    import psutil

    out: dict[str, int] = {}
    for p in psutil.process_iter(["name", "cmdline"]):
        name = p.info.get("name") or ""
        cmd = " ".join(p.info.get("cmdline") or [])
        if name == "redis-server" and ":6379" in cmd and "redis" not in out:
            out["redis"] = p.pid
        elif name.startswith("beam") and "rabbit" in cmd and "rabbitmq" not in out:
            out["rabbitmq"] = p.pid
    return out


class Sampler:
    """Samples the process trees of ``groups`` (name -> pid getter) in a thread while measuring."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]], interval: float = INTERVAL) -> None:
        self.groups = groups
        self.interval = interval
        self.samples: dict[str, list[float]] = {g: [] for g in groups}
        self.cpu0: dict[str, float] = {}
        self.cpu1: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.count = 0

    def _procs(self, name: str) -> list[Any]:
        out: list[Any] = []
        for pid in self.groups[name]():
            out += _tree(pid, recursive=name not in FLAT)
        return out

    def _sample(self) -> None:
        for g in self.groups:
            self.samples[g].append(_rss(self._procs(g)))
        self.count += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> Sampler:
        self.cpu0 = {g: _cpu(self._procs(g), g not in FLAT) for g in self.groups}
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._sample()
        self.cpu1 = {g: _cpu(self._procs(g), g not in FLAT) for g in self.groups}
        out: dict[str, Any] = {"samples": self.count, "interval_s": self.interval}
        for g, xs in self.samples.items():
            if not any(xs):  # nothing to sample (in-process backend, container broker)
                out[g] = {"cpu_s": None, "rss_peak_mb": None, "rss_steady_mb": None}
                continue
            steady = sorted(xs)[len(xs) // 2] if xs else None
            out[g] = {"cpu_s": max(0.0, self.cpu1.get(g, 0.0) - self.cpu0.get(g, 0.0)),
                      "rss_peak_mb": max(xs) if xs else None, "rss_steady_mb": steady}
        return out


def default_groups(worker_pids: Callable[[], list[int]]) -> dict[str, Callable[[], list[int]]]:
    groups: dict[str, Callable[[], list[int]]] = {"workers": worker_pids, "producer": lambda: [os.getpid()]}
    try:
        for name, pid in broker_pids().items():
            groups[name] = (lambda p=pid: [p])
    except Exception:  # noqa: BLE001, S110 - brokers in containers are not visible
        pass
    return groups
