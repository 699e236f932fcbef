"""Plain, frozen records that cross process boundaries as JSON."""

from __future__ import annotations

import dataclasses
import enum
import time
import traceback as tb
from dataclasses import dataclass, field
from typing import Any

from .status import Status


@dataclass(frozen=True)
class ErrorInfo:
    """A remote exception as strings: class path, message and formatted traceback."""

    type: str
    message: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        klass = type(exc)
        module = klass.__module__
        name = klass.__qualname__ if module in ("builtins", "") else f"{module}.{klass.__qualname__}"
        text = "".join(tb.format_exception(klass, exc, exc.__traceback__))
        return cls(type=name, message=str(exc), traceback=text)

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorInfo:
        return cls(type=str(data.get("type", "")), message=str(data.get("message", "")),
                   traceback=str(data.get("traceback", "")))


_MISSING: Any = object()


@dataclass(frozen=True)
class TaskResult:
    """What a client can know of a task: status, value or error, timestamps.

    ``has_value`` tells a task that returned ``None`` apart from one that has not finished.
    Timestamps are host clock seconds (``time.time()``) or None when the backend does not know.
    """

    id: str
    status: Status
    task_name: str | None = None
    value: Any = None
    has_value: bool = False
    error: ErrorInfo | None = None
    attempts: int | None = None
    progress: dict[str, Any] | None = None
    enqueued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    note: str = ""

    @property
    def finished(self) -> bool:
        return self.status.finished

    def replace(self, **changes: Any) -> TaskResult:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "status": self.status.value}
        for key in ("task_name", "attempts", "progress", "enqueued_at", "started_at", "finished_at"):
            v = getattr(self, key)
            if v is not None:
                d[key] = v
        if self.has_value:
            d["value"] = self.value
        if self.error is not None:
            d["error"] = self.error.to_dict()
        if self.note:
            d["note"] = self.note
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskResult:
        err = data.get("error")
        return cls(
            id=str(data["id"]),
            status=Status(data.get("status", "UNKNOWN")),
            task_name=data.get("task_name"),
            value=data.get("value"),
            has_value="value" in data,
            error=ErrorInfo.from_dict(err) if err else None,
            attempts=data.get("attempts"),
            progress=data.get("progress"),
            enqueued_at=data.get("enqueued_at"),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            note=data.get("note", ""),
        )

    @classmethod
    def unknown(cls, task_id: str) -> TaskResult:
        return cls(id=task_id, status=Status.UNKNOWN)


@dataclass(frozen=True)
class Message:
    """One submission, as the facade hands it to an adapter."""

    id: str
    task_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    queue: str
    options: dict[str, Any] = field(default_factory=dict)
    enqueued_at: float = field(default_factory=time.time)


class CancelOutcome(str, enum.Enum):
    """What ``cancel()`` achieved."""

    CANCELLED_BEFORE_START = "cancelled_before_start"  # it will never run
    TERMINATED_WHILE_RUNNING = "terminated_while_running"  # it was stopped mid-run
    NOT_INTERRUPTIBLE = "not_interruptible"  # it is running and the library cannot stop it: it will finish
    ALREADY_FINISHED = "already_finished"  # nothing to cancel


@dataclass(frozen=True)
class CancelResult:
    id: str
    outcome: CancelOutcome
    status: Status  # the status right after the cancel request
    note: str = ""

    @property
    def cancelled(self) -> bool:
        return self.outcome in (CancelOutcome.CANCELLED_BEFORE_START, CancelOutcome.TERMINATED_WHILE_RUNNING)
