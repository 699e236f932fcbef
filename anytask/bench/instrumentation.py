"""What the stamps cost, measured as an A/B comparison in the run itself.

The same drain of N noop tasks runs through anytask's in-process ``memory://`` backend with the
stamps switched on (every task appends its start and end lines to a stamp file, exactly as in a
measurement) and off (``stamp`` returns at once), alternating, ``rounds`` times each. ``memory``
is the strictest case: its per-task overhead is the smallest of all backends (tens of
microseconds, no broker, no process hop), so the stamps weigh most there; for a broker backend
the same absolute cost is a far smaller fraction.

Many short pairs (15 x 1000 tasks, ~50 ms each) rather than a few long ones: on a shared machine a
burst of load hits a short arm or two, and the median of the pair ratios sets them aside.
Reported: the drain time of each arm per round, the median of the per-pair ratios ``on/off - 1``
(``overhead``; compared with the 3 % limit) with their quartiles (``overhead_q1_q3``: the noise), and
the absolute cost per task from the arms' median drain times (0 when below the noise), which
the harness applies to every noop record (cost x throughput / slots) to flag a record where the
stamps would exceed 3 % of its task time.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from typing import Any

from . import stamps

LIMIT = 0.03


def _drain(client: Any, task: Any, n: int, prefix: str) -> float:
    t0 = time.perf_counter()
    handles = [client.submit(task, f"{prefix}-{i}") for i in range(n)]
    for h in handles:
        h.result(timeout=30)
    return time.perf_counter() - t0


def measure(directory: str, n: int = 1000, rounds: int = 15, workers: int = 2) -> dict[str, Any]:
    """A/B: drain ``n`` noop tasks on ``memory://`` with stamps on and off, ``rounds`` pairs, alternating."""
    from anytask import connect

    from . import tasks

    os.makedirs(directory, exist_ok=True)
    client = connect(f"memory://bench-instrumentation-{os.getpid()}?workers={workers}")
    noop = tasks.noop.using(queue="instrumentation")
    on: list[float] = []
    off: list[float] = []
    try:
        stamps.configure(None)
        _drain(client, noop, min(n, 200), "warm")  # unrecorded: threads started, code paths warm
        for r in range(rounds):
            # alternate which arm goes first, so a drift of the machine's load hits both arms alike
            for arm in (("on", "off") if r % 2 == 0 else ("off", "on")):
                stamps.configure(directory if arm == "on" else None)
                (on if arm == "on" else off).append(_drain(client, noop, n, f"ab{r}{arm}"))
    finally:
        stamps.configure(None)
        client.close()
        shutil.rmtree(directory, ignore_errors=True)
    ratios = [a / b - 1.0 for a, b in zip(on, off, strict=True) if b > 0]
    overhead = statistics.median(ratios)
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [overhead, overhead, overhead]
    per_task_s = max(0.0, statistics.median(on) - statistics.median(off)) / n
    return {"method": "A/B drain of noop tasks on memory://, stamps on vs off, alternating",
            "backend": "memory", "n": n, "rounds": rounds, "workers": workers,
            "on_s": [round(x, 5) for x in on], "off_s": [round(x, 5) for x in off],
            "overhead": overhead, "overhead_q1_q3": [q[0], q[2]], "per_task_us": per_task_s * 1e6, "limit": LIMIT,
            "within_limit": overhead <= LIMIT}
