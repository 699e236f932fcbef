"""Native mode: each library through its own API and its own worker CLI.

One module per library (``<library>_app``): its tasks run the same :mod:`anytask.bench.work`
bodies as the facade tasks, its app/broker is built from environment variables (so the
library's own worker CLI can import it), and its :class:`Driver` enqueues and awaits natively.
Each is configured as the anytask adapter configures the library, per configuration.
"""

from __future__ import annotations

import importlib

from ..driver import Driver, Setup

ENV_URL = "ANYTASK_BENCH_NATIVE_URL"  # the library's broker URL
ENV_RESULT = "ANYTASK_BENCH_NATIVE_RESULT"  # result store URL (Redis) where it differs
ENV_QUEUE = "ANYTASK_BENCH_NATIVE_QUEUE"
ENV_CONFIG = "ANYTASK_BENCH_NATIVE_CONFIG"


def driver_for(setup: Setup) -> Driver:
    module = importlib.import_module(f"{__name__}.{setup.target.library}_app")
    return module.NativeDriver(setup)  # type: ignore[no-any-return]
