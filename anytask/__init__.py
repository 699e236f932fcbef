"""anytask: one typed API over Celery, RQ, Dramatiq, Huey and TaskiQ.

    import anytask

    @anytask.task
    def add(x: int, y: int) -> int:
        return x + y

    client = anytask.connect("rq+redis://127.0.0.1:6379/0")
    print(client.submit(add, 2, 3).result(timeout=10))
"""

from .facade import *  # noqa: F403
from .facade import __all__ as _facade_all

__version__ = "0.1.0"
__all__ = list(_facade_all)
