"""``@task``: a plain function plus frozen options, registered under a stable name."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from .errors import ConfigurationError, InvalidTask, TaskNotRegistered

if TYPE_CHECKING:
    from .canvas import Signature

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_QUEUE = "default"


_PERIODS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}


def parse_rate(rate: str) -> tuple[int, float]:
    """``"10/s"``, ``"100/m"``, ``"1000/h"`` -> (count, period in seconds)."""
    try:
        count_s, period_s = str(rate).replace(" ", "").split("/")
        count, period = int(count_s), _PERIODS[period_s.lower()]
        if count <= 0:
            raise ValueError
    except (ValueError, KeyError):
        raise ConfigurationError(f"rate_limit={rate!r} must look like '10/s', '100/m' or '1000/h' "
                                 "(tasks started per period, per task name)") from None
    return count, period


@dataclass(frozen=True)
class TaskOptions:
    """Options of a task; set at decoration and overridden per submit with ``Task.using()``.

    ``retries`` counts retries after the first attempt (``retries=2`` = at most 3 runs), on every
    backend. ``timeout``, ``retry_backoff``, ``delay`` and ``result_ttl`` are seconds. ``priority`` is
    0..9, higher runs first (None: the backend's default, 0 lowest). ``rate_limit`` is ``"N/s"``,
    ``"N/m"`` or ``"N/h"``: at most N starts per period for this task name. ``unique_key``: while a
    task submitted with the same key is known (its record's lifetime), a submit returns the first
    handle instead of enqueueing. ``result_ttl``: how long state and result are kept after the end.
    """

    queue: str = DEFAULT_QUEUE
    retries: int = 0
    retry_backoff: float = 0.0
    timeout: float | None = None
    priority: int | None = None
    delay: float | None = None
    at: datetime | None = None
    rate_limit: str | None = None
    unique_key: str | None = None
    result_ttl: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.queue, str) or not self.queue or not self.queue.replace("-", "_").replace(".", "_").isidentifier():
            raise ConfigurationError(f"queue name {self.queue!r} must be a non-empty name of letters, digits, '_', '-' or '.'")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigurationError(f"retries={self.retries!r} must be an int >= 0 (it counts retries after the first run)")
        for name in ("retry_backoff", "timeout", "delay", "result_ttl"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or v < 0):
                raise ConfigurationError(f"{name}={v!r} must be a number of seconds >= 0")
        if self.timeout is not None and self.timeout == 0:
            raise ConfigurationError("timeout=0 is not a time limit; use None for no limit")
        if self.priority is not None and (not isinstance(self.priority, int) or not 0 <= self.priority <= 9):
            raise ConfigurationError(f"priority={self.priority!r} must be an int from 0 (lowest) to 9 (highest)")
        if self.delay is not None and self.at is not None:
            raise ConfigurationError("give either delay= or at=, not both")
        if self.rate_limit is not None:
            parse_rate(self.rate_limit)
        if self.unique_key is not None and (not isinstance(self.unique_key, str) or not self.unique_key):
            raise ConfigurationError(f"unique_key={self.unique_key!r} must be a non-empty string")


@dataclass(frozen=True)
class Task(Generic[P, R]):
    """A task: the function, its registered name and its options.

    Calling a task calls the function directly, in this process.
    """

    func: Callable[P, R]
    name: str
    options: TaskOptions = field(default_factory=TaskOptions)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    def using(self, **overrides: Any) -> Task[P, R]:
        """A copy with some options replaced, e.g. ``add.using(delay=5, queue="fast")``."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(TaskOptions)}
        if unknown:
            raise ConfigurationError(f"unknown task option(s) {sorted(unknown)}; valid: "
                                     f"{[f.name for f in dataclasses.fields(TaskOptions)]}")
        return dataclasses.replace(self, options=dataclasses.replace(self.options, **overrides))

    def s(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """A signature for a chain, group or chord (docs/canvas.md); in a chain the previous
        result is prepended to ``args``, so give only the arguments that follow it."""
        from .canvas import Signature

        return Signature(self, tuple(args), dict(kwargs))

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"


_REGISTRY: dict[str, Task[Any, Any]] = {}


def task_name_of(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def _validate_function(func: Callable[..., Any]) -> None:
    if not callable(func) or not hasattr(func, "__qualname__"):
        raise InvalidTask(f"{func!r} is not a function; @task decorates module-level functions")
    qual = func.__qualname__
    where = f"{func.__module__}.{qual}"
    if func.__name__ == "<lambda>":
        raise InvalidTask(f"a lambda cannot be a task ({where}): workers import tasks by name; "
                          "define it with 'def' at module level")
    if "<locals>" in qual or "." in qual:
        raise InvalidTask(f"{where} is not defined at module level: workers import tasks by name, "
                          "so define the function at the top level of an importable module")
    if func.__module__ in ("__main__", "__mp_main__"):
        raise InvalidTask(f"{qual} is defined in __main__, which workers cannot import; "
                          "move it into a module (e.g. myapp/tasks.py) and import it from there")


@overload
def task(func: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(*, name: str | None = None, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(func: Callable[P, R] | None = None, /, *, name: str | None = None,
         **options: Any) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Make a module-level function a task: ``@task`` or ``@task(queue=..., retries=..., timeout=...)``."""

    def decorate(f: Callable[P, R]) -> Task[P, R]:
        _validate_function(f)
        try:
            opts = TaskOptions(**options)
        except TypeError:
            valid = [fl.name for fl in dataclasses.fields(TaskOptions)]
            raise ConfigurationError(f"unknown @task option(s) {sorted(options)}; valid: {valid}") from None
        t: Task[P, R] = Task(func=f, name=name or task_name_of(f), options=opts)
        _REGISTRY[t.name] = t
        return t

    if func is not None:
        return decorate(func)
    return decorate


def get_task(name: str) -> Task[Any, Any]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise TaskNotRegistered(
            f"task {name!r} is not registered in this process; start the worker with "
            f"--tasks naming the module that defines it (e.g. --tasks {name.rpartition('.')[0] or name})"
        ) from None


def registered_tasks() -> dict[str, Task[Any, Any]]:
    return dict(_REGISTRY)
