"""Facade ``submit`` vs the library's own submit, per backend: the producer-side cost of anytask.

Each round enqueues one ``noop`` task (no worker runs; the messages are purged afterwards), once
through the library's own API (the bench harness's native drivers) and once through
``anytask.connect(url).submit`` (the harness's facade driver), in the same process, against the
same broker. ``memory`` has no native side, and its facade submit also runs the task in a pool
thread of this process.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import pytest

from anytask.bench.driver import FacadeDriver, Setup
from anytask.bench.targets import ALL, Isolation, Target, reachable

_ids = itertools.count()


def _driver(mode: str, target: Target, iso: Isolation) -> Any:
    setup = Setup(target, "defaults", 2, iso, os.path.join(iso.workdir, "stamps"), iso.workdir)
    if mode == "facade":
        return FacadeDriver(setup)
    from anytask.bench.native import driver_for

    return driver_for(setup)


@pytest.mark.parametrize("mode", ["native", "facade"])
@pytest.mark.parametrize("backend", ALL)
def test_submit(benchmark: Any, iso: Isolation, backend: str, mode: str) -> None:
    target = Target(backend)
    if backend == "memory" and mode == "native":
        pytest.skip("memory:// is anytask's own backend: it has no native library")
    if not reachable(target, iso):
        pytest.skip(f"{backend}: broker does not answer ({target.endpoints(iso)})")
    run_iso = Isolation(f"{iso.run_id}{backend.replace('+', '')}{mode[0]}", iso.workdir, iso.redis, iso.amqp,
                        iso.redis_db)
    driver = _driver(mode, target, run_iso)
    benchmark.group = backend
    benchmark.extra_info.update(backend=backend, mode=mode, task="noop")
    try:
        driver.submit("noop", "warm", ())  # connections and queue declarations outside the rounds
        benchmark.pedantic(lambda: driver.submit("noop", f"mb-{next(_ids)}", ()), rounds=300, iterations=1,
                           warmup_rounds=20)
    finally:
        driver.purge()
        driver.close()
