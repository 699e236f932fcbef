"""Start and stop real worker processes through ``anytask worker``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from ..facade.client import Client
from ..facade.errors import AnytaskError


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float, *, term_group: bool = False) -> int | None:
    """SIGTERM ``proc`` (or its whole process group), wait up to ``timeout``, then SIGKILL the group.

    Signalling only the leader lets it shut down its children its own way (``anytask worker``
    forwards the signal to the library's worker); the final SIGKILL leaves nothing behind.
    """
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            if term_group:
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(5)
    return proc.returncode


class WorkerProcess:
    """``python -m anytask worker URL --tasks ...`` in its own process group, logging to a file."""

    def __init__(self, url: str, tasks: Sequence[str] = ("anytask.testing.tasks",), *, concurrency: int = 2,
                 queues: Sequence[str] = ("default",), config: str = "defaults", extra: Sequence[str] = (),
                 env: dict[str, str] | None = None, beat: bool = False) -> None:
        self.url = url
        self.cmd = [sys.executable, "-m", "anytask", "worker", url, "--tasks", ",".join(tasks),
                    "--concurrency", str(concurrency), "--queues", ",".join(queues), "--config", config]
        if beat:
            self.cmd.append("--beat")  # also fire the modules' anytask.periodic schedules
        if extra:
            self.cmd += ["--", *extra]
        self.env = {**os.environ, **(env or {})}
        self.log = tempfile.NamedTemporaryFile(prefix="anytask-worker-", suffix=".log", delete=False)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        return self

    def wait_ready(self, client: Client, timeout: float = 60.0) -> None:
        """Ready means a real task went through: consumers are registered and results flow."""
        from . import tasks

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode} before it was ready:\n{self.output()}")
            try:
                h = client.submit(tasks.ping)
                if h.result(timeout=min(10.0, max(0.5, deadline - time.monotonic()))) == "pong":
                    return
            except AnytaskError as exc:
                last = exc
        raise RuntimeError(f"worker for {client.url.masked} not ready after {timeout}s ({last}):\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        with open(self.log.name, errors="replace") as fh:
            return fh.read()[-6000:]

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM the worker, wait, then SIGKILL its whole process group if it is still there."""
        return stop_process(self.proc, timeout)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BeatProcess(WorkerProcess):
    """``python -m anytask beat URL --tasks ...``: the periodic schedules' beat, without a worker."""

    def __init__(self, url: str, tasks: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        super().__init__(url, tasks, env=env)
        self.cmd = [sys.executable, "-m", "anytask", "beat", url, "--tasks", ",".join(tasks)]
