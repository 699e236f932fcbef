"""A worker's writes wait out a short store outage (anytask/facade/patience.py); a client's do not."""

from __future__ import annotations

from typing import Any

import pytest

from anytask.facade.errors import BrokerAuthFailed, BrokerUnavailable
from anytask.facade.patience import MAX_PAUSE, patiently
from anytask.facade.state import MemoryStateStore, Recorder
from anytask.facade.status import Status


class Flaky:
    """A store write that fails ``n`` times with ``exc``, then works."""

    def __init__(self, n: int, exc: BaseException) -> None:
        self.n, self.exc, self.calls = n, exc, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.n:
            raise self.exc
        return "written"


def test_retries_until_the_store_answers_with_growing_pauses() -> None:
    pauses: list[float] = []
    write = Flaky(8, BrokerUnavailable("down"))
    assert patiently(write, "w", patience=1000, sleep=pauses.append) == "written"
    assert write.calls == 9
    assert pauses[:3] == [0.1, 0.2, 0.4] and max(pauses) == MAX_PAUSE


def test_gives_up_after_its_patience_with_the_last_error() -> None:
    write = Flaky(10**6, BrokerUnavailable("still down"))
    with pytest.raises(BrokerUnavailable, match="still down"):
        patiently(write, "w", patience=0.3)
    assert 2 <= write.calls < 20


@pytest.mark.parametrize("exc", [BrokerAuthFailed("wrong password"), ValueError("a bug")])
def test_other_errors_and_refused_credentials_are_not_retried(exc: BaseException) -> None:
    write = Flaky(1, exc)
    with pytest.raises(type(exc)):
        patiently(write, "w", patience=1000, sleep=lambda s: None)
    assert write.calls == 1


class DownStore(MemoryStateStore):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def write(self, task_id: str, fields: dict[str, Any], ttl: float | None) -> None:
        if self.failures:
            self.failures -= 1
            raise BrokerUnavailable("Redis restarting")
        super().write(task_id, fields, ttl)


def test_a_workers_recorder_keeps_the_end_of_a_task_a_clients_fails_at_once() -> None:
    worker = Recorder(DownStore(failures=3), patience=30)
    worker.succeeded("t1", 42)
    assert worker.read("t1").status is Status.SUCCEEDED and worker.read("t1").value == 42
    client = Recorder(DownStore(failures=1))
    with pytest.raises(BrokerUnavailable):
        client.submitted("t2", "add")
