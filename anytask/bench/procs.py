"""Worker processes: started in their own session, logged to a file, stopped as a whole group."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence

from ..testing.workers import stop_process


class Proc:
    """One command in its own process group (so that SIGKILL reaches forked children too)."""

    def __init__(self, cmd: Sequence[str], env: dict[str, str], log_path: str) -> None:
        self.cmd = list(cmd)
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True, stdin=subprocess.DEVNULL)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self, tail: int = 4000) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return fh.read()[-tail:]
        except OSError:
            return ""

    def stop(self, timeout: float = 3.0) -> int | None:
        """SIGTERM the whole group, wait, then SIGKILL it; nothing stays behind."""
        return stop_process(self.proc, timeout, term_group=True)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def wait_gone(pgids: Sequence[int], timeout: float = 5.0) -> list[int]:
    """The process groups still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    left = [g for g in pgids if group_alive(g)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [g for g in left if group_alive(g)]
    return left
