"""``anytask worker --beat native``: the library's own scheduler (docs/periodic.md).

Real runs (celery beat, TaskiQ's SchedulerLoop, RQ's CronScheduler with real workers and Redis) for
the libraries with intervals; Huey's minute-granular periodic tasks through their translated
``validate_datetime``; the translation of cron fields for each library; the refusals."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from pathlib import Path

import pytest

from anytask import Status
from anytask.cli import build_parser
from anytask.facade.client import Client
from anytask.facade.errors import UnsupportedFeature
from anytask.facade.schedule import Cron, Schedule, periodic, unregister_schedule
from anytask.testing import tasks
from anytask.testing.backends import REDIS, answers, selected_cases
from anytask.testing.workers import BeatProcess, WorkerProcess, stop_process

WINDOW = 4.0
_FIRED = re.compile(r"native scheduler: fired (\S+) as task (\w+)")
_SELECTED = {c.id: c.url for c in selected_cases()}


def _redis_up() -> bool:
    host, _, port = REDIS.rpartition(":")
    return answers(host, int(port))


def _schedule(every: float | None = None, cron: str | None = None, **kw: object) -> Schedule:
    name = f"native-{uuid.uuid4().hex[:8]}"
    s = periodic(tasks.add, every=every, cron=cron, args=(1, 2), name=name, **kw)  # type: ignore[arg-type]
    unregister_schedule(name)
    return s


def _ours(s: Schedule, minute: datetime) -> bool:
    """anytask's own cron on a naive-UTC minute."""
    assert isinstance(s.when, Cron)
    return s.when.matches(minute.replace(tzinfo=timezone.utc))


def _anytask(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(cwd), os.environ.get("PYTHONPATH", "")]))}
    return subprocess.run([sys.executable, "-m", "anytask", *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd=cwd)


def test_cli_beat_values() -> None:
    p = build_parser()
    assert p.parse_args(["worker", "u", "--tasks", "m", "--beat"]).beat == "anytask"  # the default is unchanged
    assert p.parse_args(["worker", "u", "--tasks", "m", "--beat", "native"]).beat == "native"
    assert p.parse_args(["worker", "u", "--tasks", "m"]).beat is None
    with pytest.raises(SystemExit):
        p.parse_args(["worker", "u", "--tasks", "m", "--beat", "cron"])


# -- real runs: an every-1-s schedule fired by the library's own scheduler ---------------------------
@pytest.mark.parametrize("mode", ["worker --beat native", "beat --native"])
@pytest.mark.parametrize("backend", ["celery+redis", "rq+redis", "taskiq+redis"])
def test_native_scheduler_runs_every_second_with_its_arguments(backend: str, mode: str, tmp_path: Path) -> None:
    url = _SELECTED.get(backend)
    if url is None:
        pytest.skip(f"{backend} not selected (ANYTASK_TEST_BACKENDS)")
    if not _redis_up():
        pytest.skip(f"no Redis at {REDIS}")
    mod = f"native_sched_{uuid.uuid4().hex[:8]}"
    queue, runs, name = f"nb{mod[-8:]}", tmp_path / "runs.txt", f"tick-{mod[-8:]}"
    (tmp_path / f"{mod}.py").write_text(textwrap.dedent(f"""\
        import anytask
        from anytask.testing import tasks
        anytask.periodic(tasks.record_time.using(queue={queue!r}), every=1, args=({str(runs)!r},),
                         kwargs={{"token": "tick"}}, name={name!r})
        """))
    client = Client(url)
    client.adapter.purge([queue])
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH", "")]))}
    worker = WorkerProcess(url, tasks=("anytask.testing.tasks", mod), queues=(queue,), concurrency=1, env=env)
    if mode == "beat --native":  # the scheduler in its own process, beside a worker without --beat
        scheduler: WorkerProcess = BeatProcess(url, ("anytask.testing.tasks", mod), env=env)
        scheduler.cmd.append("--native")
    else:
        worker.cmd += ["--beat", "native"]
        scheduler = worker
    procs = {worker, scheduler}
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + 60
        while not runs.exists() and time.monotonic() < deadline:
            assert all(p.proc is not None and p.proc.poll() is None for p in procs), [p.output() for p in procs]
            time.sleep(0.1)
        assert runs.exists(), "no periodic run within 60 s:\n" + "\n---\n".join(p.output() for p in procs)
        time.sleep(WINDOW + 0.5)
    finally:
        for p in procs:
            stop_process(p.proc, 15)
        client.adapter.purge([queue])
    lines = [ln.split() for ln in runs.read_text().splitlines() if ln.strip()]
    assert {tok for tok, _ in lines} == {"tick"}, lines  # the declared kwargs arrive
    stamps = sorted(float(ts) for _, ts in lines)
    in_window = [t for t in stamps if t <= stamps[0] + WINDOW]
    assert 2 <= len(in_window) <= WINDOW + 3, f"{len(in_window)} runs in {WINDOW} s: {in_window}"
    scheduler.log.flush()
    fires = [tid for sched, tid in _FIRED.findall(Path(scheduler.log.name).read_text(errors="replace")) if sched == name]
    assert len(fires) >= len(lines), f"{len(lines)} runs, {len(fires)} fires logged"
    done = [client.get(tid) for tid in fires]  # every fire is an anytask task: its state is readable by id
    assert sum(r.status is Status.SUCCEEDED for r in done) >= len(in_window) - 1, [r.status for r in done]
    client.close()


# -- Huey: minute granularity, checked on the registered periodic task -------------------------------
def _huey_url(tmp_path: Path) -> str:
    return f"huey+sqlite:///{tmp_path}/huey.db"


def _huey_task(tmp_path: Path, s: Schedule) -> object:
    from anytask.adapters.huey_beat import HueyNativeBeat

    adapter: Any = Client(_huey_url(tmp_path)).adapter
    wrapper = HueyNativeBeat(adapter, [s]).register("default")[s.name]
    return wrapper.task_class()


def _utc(*a: int) -> datetime:
    return datetime(a[0], a[1], a[2], a[3], a[4])  # naive UTC, as Huey (utc=True) passes it


@pytest.mark.parametrize("every, yes, no", [
    (60, [(2026, 3, 2, 10, 7)], []),
    (300, [(2026, 3, 2, 10, 0), (2026, 3, 2, 10, 55)], [(2026, 3, 2, 10, 7), (2026, 3, 2, 10, 1)]),
    (7200, [(2026, 3, 2, 0, 0), (2026, 3, 2, 14, 0)], [(2026, 3, 2, 13, 0), (2026, 3, 2, 14, 1)]),
    (86400, [(2026, 3, 2, 0, 0)], [(2026, 3, 2, 1, 0), (2026, 3, 2, 0, 30)]),
])
def test_huey_interval_becomes_an_epoch_aligned_crontab(tmp_path: Path, every: int, yes: list[tuple[int, ...]],
                                                         no: list[tuple[int, ...]]) -> None:
    s = _schedule(every=every)
    task = _huey_task(tmp_path, s)
    for t in yes:
        assert task.validate_datetime(_utc(*t)), t  # type: ignore[attr-defined]
    for t in no:
        assert not task.validate_datetime(_utc(*t)), t  # type: ignore[attr-defined]


@pytest.mark.parametrize("expr, yes, no", [
    ("30 7 * * mon-fri", [(2026, 3, 2, 7, 30), (2026, 3, 6, 7, 30)], [(2026, 3, 1, 7, 30), (2026, 3, 2, 7, 31)]),
    ("*/20 9-17 1 jan,jul *", [(2026, 1, 1, 9, 40), (2026, 7, 1, 17, 0)], [(2026, 2, 1, 9, 40), (2026, 1, 2, 9, 40)]),
    ("@hourly", [(2026, 3, 2, 5, 0)], [(2026, 3, 2, 5, 1)]),
    ("0 0 1-31 * sun", [(2026, 3, 2, 0, 0)], []),  # both day fields restricted, one takes every day: every day
])
def test_huey_cron_matches_where_anytask_matches(tmp_path: Path, expr: str, yes: list[tuple[int, ...]],
                                                  no: list[tuple[int, ...]]) -> None:
    s = _schedule(cron=expr)
    task = _huey_task(tmp_path, s)
    for t in yes + no:  # the translation agrees with anytask's own cron on each chosen minute
        assert task.validate_datetime(_utc(*t)) == _ours(s, _utc(*t)), t  # type: ignore[attr-defined]
        assert (t in yes) == task.validate_datetime(_utc(*t)), t  # type: ignore[attr-defined]


@pytest.mark.parametrize("when, message", [
    ({"every": 1}, "not a multiple of 60 s"),
    ({"every": 90}, "not a multiple of 60 s"),
    ({"every": 420}, "must divide an hour or a day"),
    ({"every": 5 * 3600}, "must divide an hour or a day"),
    ({"cron": "0 0 13 * fri"}, "split it into schedules"),
])
def test_huey_refuses_what_a_crontab_cannot_say(tmp_path: Path, when: dict[str, object], message: str) -> None:
    s = _schedule(**when)  # type: ignore[arg-type]
    with pytest.raises(UnsupportedFeature, match=message) as exc:
        _huey_task(tmp_path, s)
    assert "--beat native" in str(exc.value) and "anytask's beat" in str(exc.value)


# -- cron translation of the other libraries, checked against anytask's cron on chosen minutes -------
_MINUTES = [_utc(2026, 3, d, h, m) for d in (1, 2, 6, 9, 13) for h in (0, 7, 9) for m in (0, 15, 30, 31)]


@pytest.mark.parametrize("expr", ["30 7 * * mon-fri", "*/15 9 * * *", "0 0 13 * fri", "@daily", "0,30 7 2 3 *"])
def test_taskiq_and_rq_cron_translation(expr: str) -> None:
    import pycron  # type: ignore[import-untyped]
    from croniter import croniter  # type: ignore[import-untyped]

    from anytask.adapters.rq_beat import cron_job
    from anytask.adapters.taskiq_beat import scheduled_task

    s = _schedule(cron=expr)
    t = scheduled_task("taskiq+redis", s)
    assert t.cron is not None and t.args == [1, 2] and t.task_name == tasks.add.name
    if time.timezone == 0 and not time.daylight:
        job = cron_job("rq+redis", "rq+redis://127.0.0.1:1/0", s)
        assert job.cron == t.cron and job.args == (1, 2)
    for m in _MINUTES:
        ours = _ours(s, m)
        assert pycron.is_now(t.cron, m) == ours, (t.cron, m)
        assert croniter.match(t.cron, m) == ours, (t.cron, m)


@pytest.mark.parametrize("expr", ["30 7 * * mon-fri", "*/15 9 * * *", "0 0 */2 * 1", "@daily"])
def test_celery_cron_translation(expr: str) -> None:
    from anytask.adapters.celery_beat import beat_entry

    s = _schedule(cron=expr)
    entry = beat_entry("celery+redis", s)
    cron = entry["schedule"]
    assert entry["task"] == tasks.add.name and entry["args"] == [1, 2]
    for m in _MINUTES:  # Celery's own evaluation: due at m when last run a minute before
        at = m.replace(tzinfo=timezone.utc)
        cron.nowfun = lambda at=at: at
        assert cron.is_due(at - timedelta(minutes=1)).is_due == _ours(s, m), (expr, m)


def test_refusals_name_the_restriction() -> None:
    from anytask.adapters.celery_beat import beat_entry
    from anytask.adapters.taskiq_beat import scheduled_task

    with pytest.raises(UnsupportedFeature, match="both of day-of-month and day-of-week"):
        beat_entry("celery+redis", _schedule(cron="0 0 13 * fri"))
    with pytest.raises(UnsupportedFeature, match="whole seconds"):
        scheduled_task("taskiq+redis", _schedule(every=1.5))
    with pytest.raises(UnsupportedFeature, match="either of day-of-month and day-of-week"):
        scheduled_task("taskiq+redis", _schedule(cron="0 0 */2 * 1"))


def _declaring_module(tmp_path: Path) -> str:
    (tmp_path / "native_decl.py").write_text(textwrap.dedent("""\
        import anytask
        from anytask.testing import tasks
        anytask.periodic(tasks.add, every=60, args=(1, 2))
        """))
    return "anytask.testing.tasks,native_decl"


def test_dramatiq_refuses_and_names_periodiq(tmp_path: Path) -> None:
    r = _anytask("worker", "dramatiq+redis://127.0.0.1:1/0", "--tasks", _declaring_module(tmp_path),
                 "--beat", "native", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "--beat native" in r.stderr and "periodiq" in r.stderr and "no scheduler" in r.stderr, r.stderr


def test_huey_beat_native_process_is_refused(tmp_path: Path) -> None:
    r = _anytask("beat", _huey_url(tmp_path), "--tasks", _declaring_module(tmp_path), "--native", cwd=tmp_path)
    assert r.returncode == 2 and "runs inside its worker" in r.stderr and "--beat native" in r.stderr, r.stderr


def test_huey_sub_minute_is_refused_at_worker_start(tmp_path: Path) -> None:
    (tmp_path / "native_fast.py").write_text(textwrap.dedent("""\
        import anytask
        from anytask.testing import tasks
        anytask.periodic(tasks.add, every=1, args=(1, 2))
        """))
    r = _anytask("worker", _huey_url(tmp_path), "--tasks", "anytask.testing.tasks,native_fast", "--beat", "native",
                 cwd=tmp_path)
    assert r.returncode == 2 and "not a multiple of 60 s" in r.stderr, r.stderr
