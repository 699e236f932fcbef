"""Conformance cases of periodic tasks (``anytask.periodic`` + ``anytask worker --beat`` / ``anytask beat``).

Imported by :mod:`anytask.testing.conformance`, so they run on every selected backend; they skip
only through the PERIODIC declaration. Each case writes a small module that declares a schedule
(every 1 s: cron has minute resolution) and starts real worker / beat processes that import it.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from anytask import Feature, Status

from .plugin import BackendUnderTest
from .workers import BeatProcess, WorkerProcess

WINDOW = 4.0  # seconds of beat counted after the first run
_FIRED = re.compile(r"anytask beat (\w+): fired (\S+) at (\d+\.\d+) as task (\w+)")


def _needs_periodic(b: BackendUnderTest) -> None:
    if not b.capabilities.supports(Feature.PERIODIC):
        pytest.skip(f"{b.case.id} declares periodic unsupported: {b.capabilities.get(Feature.PERIODIC).how}")
    if not b.capabilities.needs_worker:
        pytest.skip(f"{b.case.id} runs tasks in-process: no worker to run a beat beside")


@dataclass(frozen=True)
class _Case:
    path: str  # where the periodic task records its runs
    queue: str  # a queue only this case's worker consumes (purged before and after)
    module: str  # the module declaring the schedule, importable with env
    name: str  # the schedule's name
    env: dict[str, str]

    @property
    def modules(self) -> tuple[str, str]:
        return ("anytask.testing.tasks", self.module)


def _schedule_module(b: BackendUnderTest, queue: str = "") -> _Case:
    """Write a module declaring 'record_time(path, token="tick") every 1 s on a fresh queue'."""
    mod = f"anytask_periodic_{uuid.uuid4().hex[:10]}"
    case = _Case(path=os.path.join(b.tmp, f"{mod}.txt"), queue=queue or f"beat{mod[-6:]}", module=mod,
                 name=f"tick-{mod[-10:]}",
                 env={"PYTHONPATH": os.pathsep.join(filter(None, [b.tmp, os.environ.get("PYTHONPATH", "")]))})
    with open(os.path.join(b.tmp, f"{mod}.py"), "w") as fh:
        fh.write(textwrap.dedent(f"""\
            import anytask
            from anytask.testing import tasks

            anytask.periodic(tasks.record_time.using(queue={case.queue!r}), every=1, args=({case.path!r},),
                             kwargs={{"token": "tick"}}, name={case.name!r})
            """))
    return case


@contextlib.contextmanager
def _running(b: BackendUnderTest, case: _Case, *procs: WorkerProcess) -> Iterator[float]:
    """Start ``procs``, yield the time of the first periodic run, let the beat go on for WINDOW s, stop them."""
    b.client.adapter.purge([case.queue])
    try:
        with contextlib.ExitStack() as stack:
            for p in procs:
                stack.enter_context(p)
            first = _wait_first_run(case.path, procs)
            yield first
            time.sleep(WINDOW + 0.5)
    finally:
        b.client.adapter.purge([case.queue])


def _runs(path: str) -> list[tuple[str, float]]:
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [(tok, float(ts)) for tok, ts in (ln.split() for ln in fh if ln.strip())]


def _wait_first_run(path: str, procs: Sequence[WorkerProcess], timeout: float = 90.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _runs(path)
        if runs:
            return min(ts for _, ts in runs)
        for p in procs:
            if p.proc is not None and p.proc.poll() is not None:
                raise AssertionError(f"{p.cmd[3]} exited with {p.proc.returncode}:\n{p.output()}")
        time.sleep(0.1)
    raise AssertionError("no periodic run within 90 s:\n" + "\n---\n".join(p.output() for p in procs))


def _log(p: WorkerProcess) -> str:
    """The whole log (WorkerProcess.output() keeps only its tail)."""
    p.log.flush()
    with open(p.log.name, errors="replace") as fh:
        return fh.read()


def _fires(output: str, name: str) -> list[tuple[str, float, str]]:
    """(beat id, fire time, task id) of every 'fired' line of ``name`` in a process log."""
    return [(beat, float(at), tid) for beat, sched, at, tid in _FIRED.findall(output) if sched == name]


def test_periodic_runs_every_interval_with_its_arguments(anytask_backend: BackendUnderTest) -> None:
    b = anytask_backend
    _needs_periodic(b)
    case = _schedule_module(b)
    worker = WorkerProcess(b.url, tasks=case.modules, queues=(case.queue,), concurrency=1, env=case.env, beat=True)
    with _running(b, case, worker) as first:
        pass
    output = _log(worker)
    runs = _runs(case.path)
    assert {tok for tok, _ in runs} == {"tick"}, runs  # kwargs arrive
    in_window = [ts for _, ts in runs if first <= ts <= first + WINDOW]
    # one run per second: about WINDOW + 1 of them; generous bounds for a loaded machine
    assert 2 <= len(in_window) <= WINDOW + 3, f"{len(in_window)} runs in {WINDOW} s: {sorted(in_window)}"
    fires = _fires(output, case.name)
    assert len(fires) >= len(runs), f"{len(runs)} runs but the beat logged {len(fires)} fires:\n{output}"
    times = [at for _, at, _ in fires]
    assert len(set(times)) == len(times) and all(float(at).is_integer() for at in times), times  # 1 s grid
    done = [b.client.get(tid) for _, _, tid in fires]  # every fire went through the facade's submit
    assert sum(r.status is Status.SUCCEEDED for r in done) >= len(in_window) - 1, [r.status for r in done]
    assert all(r.task_name in (None, "anytask.testing.tasks.record_time") for r in done)


def test_two_beats_fire_each_time_once(anytask_backend: BackendUnderTest) -> None:
    b = anytask_backend
    _needs_periodic(b)
    case = _schedule_module(b)
    worker = WorkerProcess(b.url, tasks=case.modules, queues=(case.queue,), concurrency=2, env=case.env, beat=True)
    beat = BeatProcess(b.url, case.modules, env=case.env)  # a second beat: `anytask beat`, no worker of its own
    with _running(b, case, worker, beat) as first:
        pass
    outputs = [_log(worker), _log(beat)]
    fires = [f for out in outputs for f in _fires(out, case.name)]
    times = [at for _, at, _ in fires]
    assert len(set(times)) == len(times), f"a fire time was submitted twice: {sorted(times)}"
    started = sum("schedule(s)" in out for out in outputs)
    assert started == 2, "both beats must have run:\n" + "\n---\n".join(outputs)
    runs = [ts for _, ts in _runs(case.path) if first <= ts <= first + WINDOW]
    beats = {beat_id for beat_id, _, _ in fires}
    assert 2 <= len(runs) <= WINDOW + 3, f"{len(runs)} runs in {WINDOW} s with two beats (beats that fired: {beats})"


def test_periodic_unsupported_is_refused_at_worker_start(anytask_backend: BackendUnderTest) -> None:
    b = anytask_backend
    fs = b.capabilities.get(Feature.PERIODIC)
    if fs.supported:
        pytest.skip(f"{b.case.id} declares periodic {fs.support.value}")
    case = _schedule_module(b, queue="default")
    proc = subprocess.run([sys.executable, "-m", "anytask", "worker", b.url, "--tasks", ",".join(case.modules),
                           "--beat"], env={**os.environ, **case.env}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "periodic" in proc.stderr and fs.how in proc.stderr and b.client.backend in proc.stderr, proc.stderr
    assert not os.path.exists(case.path)


__all__ = [name for name in list(globals()) if name.startswith("test_")]
