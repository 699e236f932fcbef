"""anytask: one typed API over Celery, RQ, Dramatiq, Huey and TaskiQ.

    import anytask

    @anytask.task
    def add(x: int, y: int) -> int:
        return x + y

    client = anytask.connect("rq+redis://127.0.0.1:6379/0")
    print(client.submit(add, 2, 3).result(timeout=10))

The public names live in :mod:`anytask.facade` and are loaded on first use (PEP 562), so that a
process importing only a submodule (e.g. a task module that RQ's work horse imports for every job it
forks) does not pay for the whole facade.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .facade import *  # noqa: F403
    from .facade import __all__ as __all__

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name.startswith("__") and name != "__all__":  # dunder probes (import machinery, copy, pickle)
        raise AttributeError(name)
    facade = importlib.import_module("anytask.facade")  # not "from . import": that probes this hook again
    if name == "__all__":
        return list(facade.__all__)
    if name not in facade.__all__:
        raise AttributeError(f"module 'anytask' has no attribute {name!r}")
    value = getattr(facade, name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    facade = importlib.import_module("anytask.facade")
    return sorted({*globals(), *facade.__all__})
