"""Client side of the canvas: ``client.submit(chain | group | chord)`` and the handles it returns.

Every check (capability, task options, JSON, payload size) runs for every signature before the
first message is enqueued. Ids of every link, member and callback are chosen here, so a handle
can name tasks that a worker will submit later. See docs/canvas.md for the semantics.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from .canvas import CANVAS_KWARG, Chain, Chord, Group, Signature, link_wire
from .capabilities import Feature, Support
from .errors import ResultTimeout, TaskFailed, UnknownTaskId, UnsupportedFeature
from .records import ErrorInfo, Message, TaskResult
from .status import Status

if TYPE_CHECKING:
    from .client import Client, TaskHandle
    from .task import Task

_POLL = 0.05
_WAITS = "waits for the group"  # the note of a chord callback not submitted yet


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _finished(client: Client, res: TaskResult, deadline: float | None) -> TaskResult:
    return res if res.finished else client.adapter.wait(res.id, _remaining(deadline))


def _value(res: TaskResult) -> Any:
    from .client import _unwrap

    return _unwrap(res)


@dataclass(frozen=True)
class _Submitted:
    """Tasks of one canvas, in order, with ids chosen at submit time."""

    ids: tuple[str, ...]
    task_names: tuple[str, ...]
    backend: str
    client: Client = field(repr=False, compare=False)


@dataclass(frozen=True)
class GroupHandle(_Submitted):
    """Submitted group members, in order."""

    @property
    def handles(self) -> list[TaskHandle[Any]]:
        from .client import TaskHandle

        return [TaskHandle(i, n, self.backend, self.client) for i, n in zip(self.ids, self.task_names)]

    def statuses(self) -> list[Status]:
        return [self.client.status(i) for i in self.ids]

    def results(self, timeout: float | None = None) -> list[Any]:
        """Every member's value, in member order; raises the first failure (in member order)."""
        deadline = _deadline(timeout)
        return [_value(_finished(self.client, self.client.get(i), deadline)) for i in self.ids]

    async def astatuses(self) -> list[Status]:
        return list(await asyncio.gather(*(self.client.astatus(i) for i in self.ids)))

    async def aresults(self, timeout: float | None = None) -> list[Any]:
        return await asyncio.to_thread(self.results, timeout)

    def _first_failure(self) -> tuple[int, TaskResult] | None:
        for i, tid in enumerate(self.ids):
            res = self.client.get(tid)
            if res.status in (Status.FAILED, Status.CANCELLED):
                return i, res
        return None


@dataclass(frozen=True)
class ChainHandle(_Submitted):
    """A submitted chain. ``id`` is the last link's; ``result()`` is the last link's value."""

    @property
    def id(self) -> str:
        return self.ids[-1]

    def links(self) -> list[TaskResult]:
        """One TaskResult per link. A link not submitted yet reads SCHEDULED ("waits for link i");
        after a failed or cancelled link, the later ones read CANCELLED ("not run: link i ...")
        -- they are never submitted, so the backend itself knows them as UNKNOWN."""
        out: list[TaskResult] = []
        stop: str | None = None  # why the later links will never run
        for i, (tid, name) in enumerate(zip(self.ids, self.task_names)):
            if stop is not None:
                out.append(TaskResult(tid, Status.CANCELLED, name, note=stop))
                continue
            if out and out[-1].status is not Status.SUCCEEDED:
                out.append(TaskResult(tid, Status.SCHEDULED, name, note=f"waits for link {i - 1}"))
                continue
            res = self.client.get(tid)
            if res.status is Status.UNKNOWN and i > 0:
                res = TaskResult(tid, Status.FAILED, name, error=self._broken(i))
            if res.status in (Status.FAILED, Status.CANCELLED):
                stop = f"not run: link {i} ({name}, {tid}) {res.status.value}"
            out.append(res)
        return out

    def status(self) -> Status:
        """The first link not SUCCEEDED decides (SUCCEEDED when every link did)."""
        return next((r.status for r in self.links() if r.status is not Status.SUCCEEDED), Status.SUCCEEDED)

    def result(self, timeout: float | None = None) -> Any:
        """The last link's value; raises the first failed link's TaskFailed (later links never run)."""
        deadline = _deadline(timeout)
        value: Any = None
        for i, tid in enumerate(self.ids):
            res = self.client.get(tid)
            if res.status is Status.UNKNOWN:  # link i-1 SUCCEEDED, and it submits link i before that is stored
                if i == 0:
                    raise UnknownTaskId(f"no task with id {tid!r} on {self.client.url.masked}")
                raise TaskFailed(tid, self._broken(i))
            value = _value(_finished(self.client, res, deadline))
        return value

    async def aresult(self, timeout: float | None = None) -> Any:
        return await asyncio.to_thread(self.result, timeout)

    async def astatus(self) -> Status:
        return await asyncio.to_thread(self.status)

    def _broken(self, i: int) -> ErrorInfo:
        return ErrorInfo("anytask.ChainBroken",
                         f"link {i - 1} ({self.task_names[i - 1]}, {self.ids[i - 1]}) succeeded but link {i} "
                         f"({self.task_names[i]}) was never submitted: its worker stopped in between, or the "
                         "records expired")


@dataclass(frozen=True)
class ChordHandle:
    """A submitted chord: ``id`` and ``result()`` are the callback's; ``group`` the members'."""

    id: str
    task_name: str
    group: GroupHandle
    backend: str
    client: Client = field(repr=False, compare=False)

    def get(self) -> TaskResult:
        """The callback's TaskResult; before it is submitted, SCHEDULED ("waits for the group"), or FAILED
        when a member failed (the callback will never run)."""
        cb = self.client.get(self.id)
        if cb.status is not Status.UNKNOWN:
            return cb
        failure = self.group._first_failure()
        if failure is not None:
            return TaskResult(self.id, Status.FAILED, self.task_name, error=self._member_failed(*failure))
        if all(s is Status.SUCCEEDED for s in self.group.statuses()):
            cb = self.client.get(self.id)  # the last member submits it before its own success is stored
            if cb.status is Status.UNKNOWN:
                return TaskResult(self.id, Status.FAILED, self.task_name, error=ErrorInfo(
                    "anytask.ChordBroken", f"every member succeeded but the callback {self.task_name} was never "
                    "submitted: the last member's worker stopped before submitting it, or the records expired"))
            return cb
        return TaskResult(self.id, Status.SCHEDULED, self.task_name, note=_WAITS)

    def status(self) -> Status:
        return self.get().status

    def result(self, timeout: float | None = None) -> Any:
        deadline = _deadline(timeout)
        while True:
            res = self.get()
            if res.note != _WAITS:
                return _value(_finished(self.client, res, deadline))
            left = _remaining(deadline)
            if left is not None and left <= 0:
                raise ResultTimeout(f"chord callback {self.id} not submitted after {timeout}s: "
                                    f"members {[s.value for s in self.group.statuses()]}")
            time.sleep(_POLL if left is None else min(_POLL, left))

    async def aresult(self, timeout: float | None = None) -> Any:
        return await asyncio.to_thread(self.result, timeout)

    async def astatus(self) -> Status:
        return await asyncio.to_thread(self.status)

    def _member_failed(self, i: int, res: TaskResult) -> ErrorInfo:
        err = res.error or ErrorInfo("", "")
        return ErrorInfo("anytask.ChordMemberFailed",
                         f"member {i} ({self.group.task_names[i]}, {res.id}) {res.status.value}"
                         + (f": {err.type}: {err.message}" if err.type else "")
                         + f"; the callback {self.task_name} will not run", err.traceback)


# -- submit ----------------------------------------------------------------------------------------


def _feature_of(obj: Chain | Group | Chord) -> Feature:
    return Feature.CHAIN if isinstance(obj, Chain) else Feature.GROUP if isinstance(obj, Group) else Feature.CHORD


def _check_feature(client: Client, feature: Feature) -> None:
    from .client import supporting_backends

    fs = client.capabilities.get(feature)
    if not fs.supported:
        raise UnsupportedFeature(client.backend, feature.value, fs.how, supporting_backends(feature))


def _prepare_all(client: Client, sigs: tuple[Signature[Any], ...]) -> list[tuple[Task[Any, Any], Message]]:
    """The client's own checks and Message for every signature, before anything is enqueued."""
    return [client._prepare(s.task, s.args, s.kwargs) for s in sigs]


def _with_cont(msg: Message, cont: dict[str, Any]) -> Message:
    from dataclasses import replace

    return replace(msg, kwargs={**msg.kwargs, CANVAS_KWARG: cont})


def _enqueue_all(client: Client, prepared: list[tuple[Task[Any, Any], Message]]) -> None:
    done: list[str] = []
    for t, msg in prepared:
        try:
            client.adapter.submit(t, msg)
        except BaseException as exc:
            if done:
                exc.add_note(f"anytask: members already enqueued (they will run): {done}")
            raise
        done.append(msg.id)


class NativeCanvas(Protocol):
    """What an adapter that declares CHAIN / GROUP / CHORD ``native`` implements: publish the whole canvas
    with the library's own mechanism, under the facade's ids (each pair is a plain submit's task and message)."""

    def submit_chain(self, links: Sequence[tuple[Task[Any, Any], Message]]) -> None: ...

    def submit_group(self, members: Sequence[tuple[Task[Any, Any], Message]]) -> None: ...

    def submit_chord(self, members: Sequence[tuple[Task[Any, Any], Message]],
                     callback: tuple[Task[Any, Any], Message]) -> None: ...


def submit_canvas(client: Client, obj: Chain | Group | Chord) -> ChainHandle | GroupHandle | ChordHandle:
    feature = _feature_of(obj)
    _check_feature(client, feature)
    native = cast(NativeCanvas, client.adapter) if client.capabilities.get(feature).support is Support.NATIVE else None
    if isinstance(obj, Chain):
        prepared = _prepare_all(client, obj.links)
        handle = ChainHandle(tuple(m.id for _, m in prepared), tuple(s.name for s in obj.links), client.backend, client)
        if native is not None:
            native.submit_chain(prepared)
            return handle
        (t0, m0), *later = prepared
        rest = [link_wire(m.id, s) for (_, m), s in zip(later, obj.links[1:])]
        client.adapter.submit(t0, _with_cont(m0, {"next": rest}) if rest else m0)
        return handle
    members = obj.members if isinstance(obj, Group) else obj.group.members
    cb = _prepare_all(client, (obj.callback,))[0] if isinstance(obj, Chord) else None
    prepared = _prepare_all(client, members)
    group = GroupHandle(tuple(m.id for _, m in prepared), tuple(s.name for s in members), client.backend, client)
    if cb is None:
        if native is not None:
            native.submit_group(prepared)
        else:
            _enqueue_all(client, prepared)
        return group
    assert isinstance(obj, Chord)
    if native is not None:
        native.submit_chord(prepared, cb)
    else:
        chord = {"id": uuid.uuid4().hex, "members": list(group.ids), "callback": link_wire(cb[1].id, obj.callback)}
        _enqueue_all(client, [(t, _with_cont(m, {"chord": {**chord, "index": i}})) for i, (t, m) in enumerate(prepared)])
    return ChordHandle(cb[1].id, obj.callback.name, group, client.backend, client)
