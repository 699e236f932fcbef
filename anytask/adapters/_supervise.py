"""``anytask worker`` as a supervisor: run a library's worker command and start it again when it dies.

Used where a library's worker exits for good after losing one of its processes (Dramatiq's main
process shuts everything down when a worker process dies, e.g. killed by a poison message or the
OOM killer). SIGTERM/SIGINT are forwarded and end the supervision; any other exit of the child is
logged and the command is started again after ``backoff`` seconds (doubling up to 30 s while it keeps
dying within 10 s of its start). The exit code is the child's last one when we were asked to stop.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("anytask.worker")


def supervise(argv: Sequence[str], env: dict[str, str], *, name: str, backoff: float = 1.0) -> int:
    stopping: list[int] = []
    proc: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: Any) -> None:
        stopping.append(signum)
        if proc and proc[0].poll() is None:
            proc[0].send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    delay = backoff
    try:
        while True:
            started = time.monotonic()
            proc[:] = [subprocess.Popen(list(argv), env=env)]
            code = proc[0].wait()
            if stopping:
                return code
            log.warning("%s worker exited with %s; anytask worker starts it again in %.0f s", name, code, delay)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not stopping:
                time.sleep(0.1)
            if stopping:
                return code
            delay = min(30.0, delay * 2) if time.monotonic() - started < 10 + delay else backoff
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
