"""Periodic tasks, declared once for every backend: ``anytask.periodic(task, every=... | cron=...)``.

A :class:`Schedule` is frozen data: the task, its arguments and *when* (:class:`Every` or
:class:`Cron`). Fire times are a pure function of the schedule, so every beat process computes the
same ones: intervals are aligned to multiples of ``every`` since the Unix epoch, cron expressions
are evaluated in UTC with minute resolution. Who fires them is the worker's ``--beat``
(see :mod:`anytask.facade.beat` and docs/periodic.md).

The cron dialect is Vixie cron's five fields ``minute hour day-of-month month day-of-week``:
``*``, ``a-b``, ``*/n``, ``a-b/n``, ``a/n`` and comma lists; month names ``jan``..``dec``,
day names ``sun``..``sat`` (0 and 7 are Sunday); ``@hourly``, ``@daily``/``@midnight``,
``@weekly``, ``@monthly``, ``@yearly``/``@annually``. When both day fields are restricted (neither
starts with ``*``) a day matches if *either* matches, as in Vixie cron.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

from . import serialization
from .canvas import Signature
from .errors import ConfigurationError, InvalidTask
from .task import Task

_MONTHS = {n: i for i, n in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
_DAYS = {n: i for i, n in enumerate("sun mon tue wed thu fri sat".split())}
_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
           "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
# (name, lowest, highest, names) per field; day-of-week accepts 7 for Sunday and folds it to 0
_NO_NAMES: dict[str, int] = {}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, _NO_NAMES), ("hour", 0, 23, _NO_NAMES), ("day of month", 1, 31, _NO_NAMES),
    ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS))
_SEARCH_YEARS = 8  # a cron that matches nothing within 8 years (e.g. Feb 30) never matches


def _value(text: str, what: str, lo: int, hi: int, names: Mapping[str, int], expr: str) -> int:
    v = names.get(text.lower()) if names else None
    if v is None:
        if not text.isdigit():
            known = f" or a name ({', '.join(names)})" if names else ""
            raise ConfigurationError(f"cron {expr!r}: {what} {text!r} is not a number{known}")
        v = int(text)
    if not lo <= v <= hi:
        raise ConfigurationError(f"cron {expr!r}: {what} {v} is outside {lo}-{hi}")
    return v


def _parse_field(text: str, what: str, lo: int, hi: int, names: Mapping[str, int], expr: str) -> frozenset[int]:
    out: set[int] = set()
    top = min(hi, 6) if names is _DAYS else hi  # '*' and 'a/n' of weekdays end on Saturday (7 is an alias)
    for part in text.split(","):
        rng, _, step_s = part.partition("/")
        step = 1
        if step_s:
            if not step_s.isdigit() or int(step_s) == 0:
                raise ConfigurationError(f"cron {expr!r}: step {step_s!r} of the {what} field must be a number >= 1")
            step = int(step_s)
        if rng == "*":
            start, end = lo, top
        elif "-" in rng:
            a, _, b = rng.partition("-")
            start, end = _value(a, what, lo, hi, names, expr), _value(b, what, lo, hi, names, expr)
            if start > end:
                raise ConfigurationError(f"cron {expr!r}: range {rng!r} of the {what} field runs backwards")
        elif rng:
            start = _value(rng, what, lo, hi, names, expr)
            end = top if step_s else start  # "a/n" = from a to the end, every n (as croniter)
        else:
            raise ConfigurationError(f"cron {expr!r}: empty item in the {what} field {text!r}")
        out.update(range(start, end + 1, step))
    return frozenset(out)


@dataclass(frozen=True)
class Cron:
    """A parsed five-field cron expression (UTC, minute resolution)."""

    expr: str
    minutes: frozenset[int] = field(init=False, repr=False)
    hours: frozenset[int] = field(init=False, repr=False)
    days: frozenset[int] = field(init=False, repr=False)
    months: frozenset[int] = field(init=False, repr=False)
    weekdays: frozenset[int] = field(init=False, repr=False)  # 0 = Sunday
    days_or: bool = field(init=False, repr=False)  # both day fields restricted: either may match

    def __post_init__(self) -> None:
        if not isinstance(self.expr, str):
            raise ConfigurationError(f"cron={self.expr!r} must be a string such as '*/5 * * * *'")
        text = _MACROS.get(self.expr.strip().lower(), self.expr)
        parts = text.split()
        if len(parts) != 5:
            raise ConfigurationError(
                f"cron {self.expr!r} must have 5 fields 'minute hour day-of-month month day-of-week' "
                f"(e.g. '*/5 * * * *'), or be one of {', '.join(_MACROS)}; got {len(parts)} field(s)")
        sets = [_parse_field(p, name, lo, hi, names, self.expr) for p, (name, lo, hi, names) in zip(parts, _FIELDS)]
        weekdays = frozenset(d % 7 for d in sets[4])
        for name, value in zip(("minutes", "hours", "days", "months", "weekdays"), (*sets[:4], weekdays)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "days_or", not parts[2].startswith("*") and not parts[4].startswith("*"))
        if self.next_after(datetime(2000, 1, 1, tzinfo=timezone.utc)) is None:
            raise ConfigurationError(f"cron {self.expr!r} matches no date (e.g. day 30 of February)")

    def _day_matches(self, d: datetime) -> bool:
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        return (dom or dow) if self.days_or else (dom and dow)

    def matches(self, t: datetime) -> bool:
        t = t.astimezone(timezone.utc)
        return (t.minute in self.minutes and t.hour in self.hours and t.month in self.months
                and self._day_matches(t))

    def next_after(self, after: datetime) -> datetime | None:
        """The first matching minute strictly after ``after`` (UTC), or None if none within 8 years."""
        t = after.astimezone(timezone.utc).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t.replace(year=t.year + _SEARCH_YEARS, month=1, day=1, hour=0, minute=0)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0)
            elif not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
            elif t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        return None

    def next_fire(self, after: float) -> float:
        nxt = self.next_after(datetime.fromtimestamp(after, timezone.utc))
        assert nxt is not None  # checked at construction: every valid expression matches within 8 years
        return nxt.timestamp()

    def describe(self) -> str:
        return f"cron {self.expr!r} (UTC)"


@dataclass(frozen=True)
class Every:
    """A fixed interval in seconds; fire times are the multiples of ``seconds`` since the Unix epoch."""

    seconds: float

    def __post_init__(self) -> None:
        s = self.seconds
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s < 1:
            raise ConfigurationError(f"every={s!r} must be a number of seconds >= 1 (or a timedelta)")

    def next_fire(self, after: float) -> float:
        n = math.floor(after / self.seconds) + 1
        return n * self.seconds

    def describe(self) -> str:
        return f"every {self.seconds:g} s"


When = Every | Cron


@dataclass(frozen=True)
class Schedule:
    """One periodic task: ``task(*args, **kwargs)`` at every fire time of ``when``."""

    name: str
    task: Task[Any, Any]
    when: When
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    module: str = ""  # the module that declared it (a worker process that re-imports it gets it back)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))

    def next_fire(self, after: float) -> float:
        """The first fire time (epoch seconds) strictly after ``after``."""
        return self.when.next_fire(after)

    def same_as(self, other: Schedule) -> bool:
        return (self.task.name == other.task.name and self.task.options == other.task.options
                and self.when == other.when and self.args == other.args and dict(self.kwargs) == dict(other.kwargs))

    def __repr__(self) -> str:
        return f"<Schedule {self.name}: {self.task.name} {self.when.describe()}>"


_SCHEDULES: dict[str, Schedule] = {}


def periodic(task: Task[Any, Any] | Signature[Any], *, every: float | timedelta | None = None,
             cron: str | None = None, args: tuple[Any, ...] | list[Any] = (),
             kwargs: Mapping[str, Any] | None = None, name: str | None = None) -> Schedule:
    """Declare that ``task(*args, **kwargs)`` runs periodically: ``every=`` seconds (or a timedelta,
    at least 1 s) or ``cron="*/5 * * * *"`` (UTC). Declare at module level in a module the worker's
    ``--tasks`` imports; ``anytask worker URL --tasks MODULE --beat`` fires it.

    ``task`` may be a signature, ``periodic(add.s(1, 2), every=60)``, instead of ``args``/``kwargs``.
    ``name`` identifies the schedule cluster-wide (default: the task's name); declaring the same
    name again with a different definition is an error, the same definition again is a no-op.
    ``task.using(queue=..., priority=...)`` carries submit options to every run.
    """
    if isinstance(task, Signature):
        if args or kwargs:
            raise ConfigurationError(f"{task!r} already carries its arguments: give args=/kwargs= or a signature, "
                                     "not both")
        args, kwargs = task.args, task.kwargs
        task = task.task
    if not isinstance(task, Task):
        raise InvalidTask(f"{getattr(task, '__qualname__', task)!r} is not a task: decorate it with "
                          "@anytask.task at module level, then declare anytask.periodic(that_task, ...)")
    if (every is None) == (cron is None):
        raise ConfigurationError("anytask.periodic() needs exactly one of every= (seconds or timedelta) "
                                 "or cron= ('minute hour day month weekday', UTC)")
    when: When
    if every is not None:
        when = Every(every.total_seconds() if isinstance(every, timedelta) else every)
    else:
        when = Cron(str(cron))
    kw = dict(kwargs or {})
    serialization.check_arguments(task.name, tuple(args), kw)
    caller = sys._getframe(1).f_globals.get("__name__", "")
    sched = Schedule(name=name or task.name, task=task, when=when, args=tuple(args), kwargs=kw, module=str(caller))
    if not sched.name or any(c.isspace() for c in sched.name):
        raise ConfigurationError(f"schedule name {sched.name!r} must be non-empty without whitespace")
    old = _SCHEDULES.get(sched.name)
    if old is not None and not old.same_as(sched):
        raise ConfigurationError(f"a different schedule named {sched.name!r} is already declared ({old!r}); "
                                 "give each schedule of the same task its own name=")
    _SCHEDULES[sched.name] = sched
    return sched


def registered_schedules() -> dict[str, Schedule]:
    return dict(_SCHEDULES)


def unregister_schedule(name: str) -> None:
    """Forget a declaration (tests)."""
    _SCHEDULES.pop(name, None)
