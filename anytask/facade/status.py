"""The one status enum shared by every backend."""

from __future__ import annotations

import enum


class Status(str, enum.Enum):
    """Where a task is in its life.

    ``UNKNOWN`` means the id was never seen (or its record expired). It is never
    used for a task that was accepted and waits in a queue: that is ``QUEUED``.
    """

    UNKNOWN = "UNKNOWN"
    SCHEDULED = "SCHEDULED"  # accepted, waiting for its ETA / delay
    QUEUED = "QUEUED"  # accepted, waiting for a worker
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"  # failed an attempt, another attempt is pending
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        """True for the three terminal states."""
        return self in _TERMINAL

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.value


_TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
TERMINAL = _TERMINAL
