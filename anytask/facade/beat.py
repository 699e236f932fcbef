"""anytask's beat: fires declared schedules by submitting through the client.

Used by ``anytask worker --beat`` (a thread beside the library's worker) and ``anytask beat`` (the
foreground of its own process) on backends that declare PERIODIC emulated. Guarantees:

- **At most once per (schedule, fire time), cluster-wide**: before submitting, a beat claims the key
  ``beat:<schedule>:<fire time>`` with the adapter's ``claim_unique`` (the backend's own atomic
  set-if-absent, e.g. Redis SET NX). Any number of beats may run; the one that wins the claim submits.
  Fire times are a pure function of the schedule, so beats on different hosts agree on them.
- **Missed fires are skipped**: while no beat runs nothing is fired and nothing is caught up later.
  A fire found more than ``GRACE`` seconds late (the process was stopped or starved) is skipped too,
  so a stall yields at most one late fire per schedule, not a burst.
- A fire whose claim was won but whose submit failed (broker down) is lost, and logged.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .schedule import Every, Schedule

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("anytask.beat")

GRACE = 60.0  # seconds: a fire found later than this is skipped as missed
CLAIM_TTL = 600.0  # seconds a fire's claim is kept: longer than GRACE plus any plausible clock skew


def claim_key(schedule: Schedule, fire: float) -> str:
    """``beat:<schedule>:<slot>``: fire times map onto a ring of slots whose reuse is at least
    2 x CLAIM_TTL apart, so a slot's previous claim has always expired, and a schedule never holds
    more than a bounded number of claim keys (SQLite keeps expired rows until they are re-claimed)."""
    step = schedule.when.seconds if isinstance(schedule.when, Every) else 60.0
    ring = math.ceil(2 * CLAIM_TTL / step) + 1
    return f"beat:{schedule.name}:{round(fire / step) % ring}"


def emulated_how(claim: str, why_not_native: str) -> str:
    """The PERIODIC declaration of an adapter that uses this beat (docs/capabilities.md)."""
    return ("anytask's beat (anytask worker --beat, or anytask beat) submits each fire through the client "
            f"after claiming (schedule, fire time) with {claim}, so any number of beats fire each time at most "
            "once cluster-wide. Weaker than a scheduler with persistent state: fires while no beat runs (or "
            f"found over {GRACE:g} s late) are skipped, not caught up, and a claimed fire whose submit fails is "
            f"lost (logged). Intervals to the second, cron to the minute (UTC). {why_not_native}")


class Beat:
    """Fire ``schedules`` through ``client`` until :meth:`stop`. ``clock`` is ``time.time`` (tests pass another)."""

    def __init__(self, client: Client, schedules: Sequence[Schedule], *, grace: float = GRACE,
                 clock: Callable[[], float] | None = None) -> None:
        self.client = client
        self.schedules = tuple(schedules)
        self.grace = grace
        self._clock: Callable[[], float] = clock or time.time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beat_id = uuid.uuid4().hex[:12]
        now = self._now()
        self.next: dict[str, float] = {s.name: s.next_fire(now) for s in self.schedules}
        self.fired = 0  # fires this beat won and submitted
        self.skipped = 0  # fires another beat had claimed, or found too late

    def _now(self) -> float:
        return self._clock()

    def fire_due(self) -> float:
        """Fire every schedule that is due now; return the next fire time of all."""
        now = self._now()
        for s in self.schedules:
            fire = self.next[s.name]
            if fire > now:
                continue
            self.next[s.name] = s.next_fire(now)
            if now - fire > self.grace:
                self.skipped += 1
                log.warning("anytask beat %s: skipped %s at %.3f, found %.1f s late", self.beat_id, s.name, fire, now - fire)
                continue
            self._fire(s, fire)
        return min(self.next.values(), default=now + 60.0)

    def _fire(self, s: Schedule, fire: float) -> None:
        marker = f"{self.beat_id}:{uuid.uuid4().hex[:8]}"
        try:
            holder = self.client.adapter.claim_unique(claim_key(s, fire), marker, CLAIM_TTL)
        except Exception:  # noqa: BLE001 - the beat keeps running through broker outages
            log.exception("anytask beat %s: cannot claim %s at %.3f; not fired", self.beat_id, s.name, fire)
            return
        if holder is not None:
            self.skipped += 1
            log.debug("anytask beat %s: %s at %.3f already fired by %s", self.beat_id, s.name, fire, holder)
            return
        try:
            h = self.client.submit(s.task, *s.args, **dict(s.kwargs))
        except Exception:  # noqa: BLE001
            log.exception("anytask beat %s: claimed %s at %.3f but the submit failed; this fire is lost",
                          self.beat_id, s.name, fire)
            return
        self.fired += 1
        log.info("anytask beat %s: fired %s at %.3f as task %s", self.beat_id, s.name, fire, h.id)

    def run(self) -> None:
        """Loop until :meth:`stop` (the foreground of ``anytask beat``, or the body of the thread)."""
        names = ", ".join(f"{s.name} ({s.when.describe()})" for s in self.schedules)
        log.info("anytask beat %s on %s: %d schedule(s): %s", self.beat_id, self.client.url.masked,
                 len(self.schedules), names or "none")
        while not self._stop.is_set():
            try:
                nxt = self.fire_due()
            except Exception:  # noqa: BLE001
                log.exception("anytask beat %s: unexpected error; retrying in 1 s", self.beat_id)
                nxt = self._now() + 1.0
            self._stop.wait(min(max(0.0, nxt - self._now()), 30.0))
        log.info("anytask beat %s stopped: %d fired, %d skipped", self.beat_id, self.fired, self.skipped)

    def start(self) -> Beat:
        """Run in a daemon thread (beside a worker in the same process)."""
        self._thread = threading.Thread(target=self.run, name="anytask-beat", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
