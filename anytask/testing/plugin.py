"""pytest plugin: one session-scoped backend (client + real worker) per selected case.

Enable it with ``pytest_plugins = ["anytask.testing.plugin"]``. Locally a backend whose broker
does not answer is skipped with the reason; under CI (``CI=true``) it fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ..facade.client import Client
from .backends import BackendCase, selected_cases, unreachable, workdir
from .workers import WorkerProcess

WORKER_CONCURRENCY = int(os.environ.get("ANYTASK_TEST_CONCURRENCY", "4"))


@dataclass
class BackendUnderTest:
    case: BackendCase
    client: Client
    worker: WorkerProcess | None
    tmp: str

    @property
    def url(self) -> str:
        return self.case.url

    @property
    def capabilities(self) -> Any:
        return self.client.capabilities


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session", params=selected_cases(), ids=lambda c: c.id)
def anytask_backend(request: pytest.FixtureRequest) -> Iterator[BackendUnderTest]:
    case: BackendCase = request.param
    reason = unreachable(case)
    if reason:
        if _in_ci():
            pytest.fail(f"broker missing under CI: {reason}")
        pytest.skip(reason)
    client = Client(case.url)
    client.adapter.purge(["default"])
    worker = None
    if client.capabilities.needs_worker:
        worker = WorkerProcess(case.url, concurrency=WORKER_CONCURRENCY).start()
        try:
            worker.wait_ready(client)
        except Exception:
            worker.stop()
            raise
    tmp = os.path.join(workdir(), case.id.replace("+", "-"))
    os.makedirs(tmp, exist_ok=True)
    try:
        yield BackendUnderTest(case, client, worker, tmp)
    finally:
        if worker is not None:
            code = worker.stop()
            if code not in (0, None, -15):
                print(f"worker of {case.id} exited with {code}:\n{worker.output()}")
        client.adapter.purge(["default"])
        client.close()
