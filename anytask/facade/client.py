"""The client: ``connect(url)``, ``submit``, ``status``, ``result`` and their async twins."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Generic, ParamSpec, TypeVar, cast, overload

from . import serialization
from .adapter import Adapter
from .backends import BACKENDS, load_adapter_class, spec_for
from .capabilities import Capabilities, Feature
from .errors import ConfigurationError, InvalidTask, MissingDependency, TaskCancelled, TaskFailed, UnknownTaskId, UnsupportedFeature
from .records import CancelOutcome, CancelResult, ErrorInfo, Message, TaskResult
from .state import DEFAULT_TTL
from .status import Status
from .task import Task, TaskOptions, get_task
from .url import BackendURL, parse_url
from .canvas import Chain, Chord, Group, Signature  # canvas
from .canvas_handles import ChainHandle, ChordHandle, GroupHandle, submit_canvas  # canvas

P = ParamSpec("P")
R = TypeVar("R")


def required_features(task: Task[Any, Any]) -> list[Feature]:
    """The features a task's options ask of a backend."""
    o: TaskOptions = task.options
    need: list[Feature] = []
    if o.retries:
        need.append(Feature.RETRIES)
    if o.timeout is not None:
        need.append(Feature.TIMEOUT)
    if task.is_async:
        need.append(Feature.ASYNC_TASKS)
    if o.delay or o.at is not None:
        need.append(Feature.DELAY)
    if o.priority is not None:
        need.append(Feature.PRIORITY)
    if o.rate_limit is not None:
        need.append(Feature.RATE_LIMIT)
    if o.unique_key is not None:
        need.append(Feature.UNIQUE)
    if o.result_ttl is not None:
        need.append(Feature.RESULT_TTL)
    return need


def supporting_backends(feature: Feature) -> list[str]:
    """Schemes whose (installed) adapter supports ``feature``; for error messages."""
    out = []
    for scheme, spec in BACKENDS.items():
        try:
            cls = load_adapter_class(spec)
        except (MissingDependency, ImportError):
            continue
        if cls.capabilities.supports(feature):
            out.append(scheme)
    return out


def check_supported(backend: str, caps: Capabilities, task: Task[Any, Any]) -> None:
    for feature in required_features(task):
        fs = caps.get(feature)
        if not fs.supported:
            raise UnsupportedFeature(backend, f"{feature.value} (task {task.name})", fs.how,
                                     supporting_backends(feature))


@dataclass(frozen=True)
class TaskHandle(Generic[R]):
    """A submitted task: its id, task name and backend, and shortcuts to the client."""

    id: str
    task_name: str
    backend: str
    client: Client = field(repr=False, compare=False)

    def status(self) -> Status:
        return self.client.status(self.id)

    def get(self) -> TaskResult:
        return self.client.get(self.id)

    def result(self, timeout: float | None = None) -> R:
        return cast(R, self.client.result(self.id, timeout=timeout))

    def progress(self) -> dict[str, Any] | None:
        """The last ``anytask.progress(done, total, **meta)`` the task reported, or None."""
        return self.client.get(self.id).progress

    def cancel(self) -> CancelResult:
        return self.client.cancel(self.id)

    async def astatus(self) -> Status:
        return await self.client.astatus(self.id)

    async def aget(self) -> TaskResult:
        return await self.client.aget(self.id)

    async def aresult(self, timeout: float | None = None) -> R:
        return cast(R, await self.client.aresult(self.id, timeout=timeout))


def _unwrap(res: TaskResult) -> Any:
    if res.status is Status.SUCCEEDED:
        return res.value
    if res.status is Status.FAILED:
        raise TaskFailed(res.id, res.error or ErrorInfo("anytask.UnknownError", "the backend gave no error details"))
    if res.status is Status.CANCELLED:
        raise TaskCancelled(f"task {res.id} was cancelled{': ' + res.note if res.note else ''}")
    raise AssertionError(f"not finished: {res.status}")  # pragma: no cover


class Client:
    """One connection to one backend. Create it with :func:`connect`."""

    def __init__(self, url: str | BackendURL | None = None, *, max_payload: int | None = None) -> None:
        if url is None:
            url = os.environ.get("ANYTASK_URL")
            if not url:
                raise ConfigurationError("no backend URL: pass one to connect() or set ANYTASK_URL, e.g. "
                                         "ANYTASK_URL=rq+redis://127.0.0.1:6379/0")
        self.url = url if isinstance(url, BackendURL) else parse_url(url)
        # bad input (issue 7): JSON size limit per submission, from the argument or ?max_payload=
        self.max_payload = serialization.parse_max_payload(
            max_payload if max_payload is not None else self.url.params.get("max_payload"))
        try:
            cls = load_adapter_class(spec_for(self.url))
        except MissingDependency as exc:  # bad input (issue 7): say which URL needed it
            raise MissingDependency(f"{exc} (needed by {self.url.masked})") from None
        self.adapter: Adapter = cls(self.url)

    @property
    def backend(self) -> str:
        return self.url.scheme

    @property
    def capabilities(self) -> Capabilities:
        return self.adapter.capabilities

    def __repr__(self) -> str:
        return f"<anytask.Client {self.url.masked}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.adapter.close()

    # -- submit ------------------------------------------------------------------------------
    def _prepare(self, task: Task[Any, Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Task[Any, Any], Message]:
        if isinstance(task, str):
            task = get_task(task)
        if not isinstance(task, Task):
            name = getattr(task, "__qualname__", repr(task))
            raise InvalidTask(f"{name} is not a task: decorate it with @anytask.task at module level")
        check_supported(self.backend, self.capabilities, task)
        serialization.check_arguments(task.name, args, kwargs)
        serialization.check_payload_size(task.name, args, kwargs, self.max_payload)
        o = task.options
        eta: float | None = None
        if o.at is not None:
            at = o.at if o.at.tzinfo else o.at.replace(tzinfo=timezone.utc)
            eta = at.timestamp()
        elif o.delay:
            eta = datetime.now(timezone.utc).timestamp() + o.delay
        options: dict[str, Any] = {"eta": eta} if eta is not None else {}
        msg = Message(id=uuid.uuid4().hex, task_name=task.name, args=tuple(args), kwargs=dict(kwargs),
                      queue=o.queue, options=options)
        return task, msg

    # -- canvas (docs/canvas.md): chain -> ChainHandle, group -> GroupHandle, chord -> ChordHandle --------------
    @overload
    def submit(self, task: Chain, /) -> ChainHandle: ...
    @overload
    def submit(self, task: Group, /) -> GroupHandle: ...
    @overload
    def submit(self, task: Chord, /) -> ChordHandle: ...
    @overload
    def submit(self, task: Signature[R], /) -> TaskHandle[R]: ...
    @overload
    def submit(self, task: Task[P, R] | Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]: ...
    # -- end canvas --

    def submit(self, task: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Enqueue ``task(*args, **kwargs)``; nothing is enqueued if a check fails."""
        if isinstance(task, (Chain, Group, Chord)):  # canvas
            return submit_canvas(self, task)
        if isinstance(task, Signature):  # canvas: a lone signature is a plain submit
            return self.submit(task.task, *task.args, **task.kwargs)
        t, msg = self._prepare(cast(Any, task), args, kwargs)
        key = t.options.unique_key
        if key is not None:
            # held while the task waits or runs; adapters with RESULT_TTL shorten it at the end
            existing = self.adapter.claim_unique(key, msg.id, max(t.options.result_ttl or 0.0, DEFAULT_TTL))
            if existing is not None:
                return TaskHandle(existing, t.name, self.backend, self)
        try:
            self.adapter.submit(t, msg)
        except BaseException:
            if key is not None:
                self.adapter.release_unique(key, msg.id)
            raise
        return TaskHandle(msg.id, t.name, self.backend, self)

    # -- canvas: async twins of the overloads above --
    @overload
    async def asubmit(self, task: Chain, /) -> ChainHandle: ...
    @overload
    async def asubmit(self, task: Group, /) -> GroupHandle: ...
    @overload
    async def asubmit(self, task: Chord, /) -> ChordHandle: ...
    @overload
    async def asubmit(self, task: Signature[R], /) -> TaskHandle[R]: ...
    @overload
    async def asubmit(self, task: Task[P, R] | Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]: ...

    async def asubmit(self, task: Any, /, *args: Any, **kwargs: Any) -> Any:
        if isinstance(task, (Chain, Group, Chord, Signature)):  # canvas: a few submits, off the event loop
            import asyncio

            submit: Callable[[Any], Any] = self.submit
            return await asyncio.to_thread(submit, task)
        t, msg = self._prepare(cast(Any, task), args, kwargs)
        if t.options.unique_key is not None:  # the claim is one short round trip: keep it on the sync path
            import asyncio

            return await asyncio.to_thread(self.submit, t, *args, **kwargs)
        await self.adapter.asubmit(t, msg)
        return TaskHandle(msg.id, t.name, self.backend, self)

    # -- cancel ------------------------------------------------------------------------------
    def cancel(self, task_id: str) -> CancelResult:
        """Cancel a task; the result says whether it was stopped before start, while running, or not."""
        fs = self.capabilities.get(Feature.CANCEL)
        if not fs.supported:
            raise UnsupportedFeature(self.backend, "cancel", fs.how, supporting_backends(Feature.CANCEL))
        res = self.adapter.get(task_id)
        if res.status is Status.UNKNOWN:
            raise UnknownTaskId(f"no task with id {task_id!r} on {self.url.masked} (never submitted, or expired)")
        if res.finished:
            return CancelResult(task_id, CancelOutcome.ALREADY_FINISHED, res.status)
        return self.adapter.cancel(task_id)

    # -- read --------------------------------------------------------------------------------
    def get(self, task_id: str) -> TaskResult:
        """Everything known of a task, without consuming its result."""
        return self.adapter.get(task_id)

    def status(self, task_id: str) -> Status:
        return self.adapter.get(task_id).status

    def result(self, task_id: str, timeout: float | None = None) -> Any:
        """Wait for the task; return its value or raise TaskFailed / TaskCancelled / ResultTimeout."""
        first = self.adapter.get(task_id)
        if first.status is Status.UNKNOWN:
            raise UnknownTaskId(f"no task with id {task_id!r} on {self.url.masked} (never submitted, or expired)")
        res = first if first.finished else self.adapter.wait(task_id, timeout)
        return _unwrap(res)

    async def aget(self, task_id: str) -> TaskResult:
        return await self.adapter.aget(task_id)

    async def astatus(self, task_id: str) -> Status:
        return (await self.adapter.aget(task_id)).status

    async def aresult(self, task_id: str, timeout: float | None = None) -> Any:
        first = await self.adapter.aget(task_id)
        if first.status is Status.UNKNOWN:
            raise UnknownTaskId(f"no task with id {task_id!r} on {self.url.masked} (never submitted, or expired)")
        res = first if first.finished else await self.adapter.await_(task_id, timeout)
        return _unwrap(res)


def connect(url: str | None = None, *, max_payload: int | None = None) -> Client:
    """A client for the backend at ``url`` (default: the ANYTASK_URL environment variable).

    ``max_payload``: bytes of argument JSON one submit may carry (default 1 MiB, also ``?max_payload=``
    in the URL; 0: no limit); a larger submit raises PayloadTooLarge and enqueues nothing.
    """
    return Client(url, max_payload=max_payload)
