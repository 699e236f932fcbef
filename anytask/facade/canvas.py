"""Canvas: chain, group and chord of task signatures (see docs/canvas.md).

    (add.s(1, 2) | add.s(10) | add.s(100))        # a Chain: 3 -> 13 -> 113
    anytask.group(add.s(1, 1), add.s(2, 2))        # a Group: [2, 4]
    anytask.chord([add.s(1, 1), add.s(2, 2)], total.s())   # total([2, 4])

As in Celery, a chain link gets the previous link's result prepended to its positional
arguments, and a chord callback gets the list of the members' results, in member order.
``client.submit(canvas)`` enqueues it. The objects here are plain frozen data; the wire format
of a continuation (what travels with a message to the worker) is defined here too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, TypeVar, Union

from .errors import ConfigurationError, InvalidTask

if TYPE_CHECKING:
    from .task import Task, TaskOptions

R = TypeVar("R")

# The reserved keyword argument that carries a continuation inside a message's kwargs. Every
# adapter hands kwargs unchanged to execution.call/acall, which removes it before the task runs,
# so the continuation travels with the message on every backend without a wire change.
CANVAS_KWARG = "__anytask_canvas__"


@dataclass(frozen=True)
class Signature(Generic[R]):
    """A task with its arguments, not yet submitted: ``task.s(*args, **kwargs)``."""

    task: Task[Any, R]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.task.name

    def using(self, **overrides: Any) -> Signature[R]:
        """The same call with some task options replaced (see ``Task.using``)."""
        return dataclasses.replace(self, task=self.task.using(**overrides))

    def __or__(self, other: Signature[Any] | Chain) -> Chain:
        return chain(self, other)

    def __repr__(self) -> str:
        return f"<Signature {self.task.name}{self.args!r}>"


@dataclass(frozen=True)
class Chain:
    """Signatures run one after the other; each gets the previous result as first argument."""

    links: tuple[Signature[Any], ...]

    def __post_init__(self) -> None:
        _check_signatures("chain", self.links)

    def __or__(self, other: Signature[Any] | Chain) -> Chain:
        return chain(self, other)


@dataclass(frozen=True)
class Group:
    """Signatures run in parallel; their results are gathered in member order."""

    members: tuple[Signature[Any], ...]

    def __post_init__(self) -> None:
        _check_signatures("group", self.members)

    def __or__(self, callback: Signature[Any]) -> Chord:
        return chord(self, callback)


@dataclass(frozen=True)
class Chord:
    """A group whose completion submits ``callback`` with the list of member results."""

    group: Group
    callback: Signature[Any]

    def __post_init__(self) -> None:
        _check_signatures("chord callback", (self.callback,))


Canvas = Union[Chain, Group, Chord]


def _check_signatures(what: str, sigs: tuple[Any, ...]) -> None:
    if not sigs:
        raise ConfigurationError(f"an empty {what}: give at least one signature, e.g. add.s(1, 2)")
    for i, s in enumerate(sigs):
        if not isinstance(s, Signature):
            raise InvalidTask(f"{what} element {i} is {s!r}, not a signature: write task.s(*args) "
                              "(chains of groups and nested canvases are not supported)")
        if s.task.options.unique_key is not None:
            raise ConfigurationError(f"{what} element {i} ({s.name}) has unique_key=: unique keys are not "
                                     "supported inside chain/group/chord (a deduplicated member would "
                                     "break result passing); submit it on its own")
        if CANVAS_KWARG in s.kwargs:
            raise ConfigurationError(f"{CANVAS_KWARG!r} is a reserved keyword argument")


def chain(*parts: Signature[Any] | Chain) -> Chain:
    """``chain(a.s(1), b.s(), c.s())``: a Chain (nested chains are flattened)."""
    links: list[Signature[Any]] = []
    for p in parts:
        links.extend(p.links if isinstance(p, Chain) else (p,))
    return Chain(tuple(links))


def group(*members: Signature[Any] | Iterable[Signature[Any]]) -> Group:
    """``group(a.s(1), a.s(2))`` or ``group([a.s(i) for i in range(10)])``."""
    if len(members) == 1 and not isinstance(members[0], Signature):
        return Group(tuple(members[0]))
    return Group(tuple(members))  # type: ignore[arg-type]  # _check_signatures refuses non-signatures


def chord(header: Group | Iterable[Signature[Any]], callback: Signature[Any]) -> Chord:
    """``chord([a.s(1), a.s(2)], total.s())``: ``total([a(1), a(2)])`` once every member succeeded."""
    return Chord(header if isinstance(header, Group) else group(list(header)), callback)


# -- wire format of continuations (JSON) -----------------------------------------------------------


def eta_of(options: TaskOptions) -> float | None:
    """The epoch second a task with these options may start (None: now), as the client computes it."""
    if options.at is not None:
        at = options.at if options.at.tzinfo else options.at.replace(tzinfo=timezone.utc)
        return at.timestamp()
    if options.delay:
        return datetime.now(timezone.utc).timestamp() + options.delay
    return None


def encode_options(options: TaskOptions) -> dict[str, Any]:
    """Every field of ``options`` as JSON (``at`` as ISO 8601): the worker re-applies them all."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(options):
        v = getattr(options, f.name)
        out[f.name] = v.isoformat() if isinstance(v, datetime) else v
    return out


def decode_options(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    if isinstance(out.get("at"), str):
        out["at"] = datetime.fromisoformat(out["at"])
    return out


def link_wire(task_id: str, sig: Signature[Any]) -> dict[str, Any]:
    """One signature to be submitted later by a worker, under a facade id chosen now."""
    return {"id": task_id, "task": sig.task.name, "args": list(sig.args), "kwargs": dict(sig.kwargs),
            "options": encode_options(sig.task.options)}


__all__ = ["CANVAS_KWARG", "Canvas", "Chain", "Chord", "Group", "Signature", "chain", "chord", "group"]
