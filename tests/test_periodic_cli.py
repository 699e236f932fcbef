"""`anytask worker --beat` and `anytask beat`: what the command line says and refuses.

Runs with real beats and workers are in anytask/testing/conformance_periodic.py (every backend)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from anytask import Feature
from anytask.cli import build_parser
from anytask.facade.backends import BACKENDS, load_adapter_class
from anytask.facade.errors import MissingDependency


def anytask(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(cwd or ""), os.environ.get("PYTHONPATH", "")]))}
    return subprocess.run([sys.executable, "-m", "anytask", *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd=cwd)


def test_help_mentions_beat() -> None:
    parser = build_parser()
    sub: dict[str, Any] = dict(next(a for a in parser._actions if a.dest == "command").choices or {})
    assert "--beat" in sub["worker"].format_help() and "docs/periodic.md" in sub["worker"].format_help()
    assert "anytask.periodic" in sub["beat"].format_help()


def test_beat_without_schedules_is_an_error() -> None:
    # the URL is never contacted: the check comes first
    r = anytask("worker", "rq+redis://127.0.0.1:1/0", "--tasks", "anytask.testing.tasks", "--beat")
    assert r.returncode == 2 and "declare(s) no anytask.periodic" in r.stderr, r.stderr
    r = anytask("beat", "rq+redis://127.0.0.1:1/0", "--tasks", "anytask.testing.tasks")
    assert r.returncode == 2 and "declare(s) no anytask.periodic" in r.stderr, r.stderr


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_unsupported_backend_is_refused_with_the_reason(tmp_path: Path, command: str) -> None:
    (tmp_path / "sched_mod.py").write_text(textwrap.dedent("""\
        import anytask
        from anytask.testing import tasks
        anytask.periodic(tasks.add, every=5, args=(1, 2))
        """))
    args = ["--beat"] if command == "worker" else []
    r = anytask(command, "memory://", "--tasks", "anytask.testing.tasks,sched_mod", *args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "does not support periodic tasks (--beat)" in r.stderr
    why = load_adapter_class(BACKENDS["memory"]).capabilities.features[Feature.PERIODIC].how
    assert why and why in r.stderr  # the declared reason, whatever its wording
    assert "supported by: " in r.stderr and "rq+redis" in r.stderr


_OPTIONS = {Feature.DELAY: "delay=5", Feature.PRIORITY: "priority=5", Feature.TIMEOUT: "timeout=5",
            Feature.RATE_LIMIT: "rate_limit='5/s'", Feature.RESULT_TTL: "result_ttl=60"}


def test_a_schedules_task_options_are_checked_against_the_backend(tmp_path: Path) -> None:
    """A schedule whose task asks for an option the backend cannot honour is refused at beat start."""
    for spec in BACKENDS.values():
        try:
            caps = load_adapter_class(spec).capabilities
        except (MissingDependency, ImportError):
            continue
        missing = [f for f in _OPTIONS if caps.supports(Feature.PERIODIC) and not caps.supports(f)]
        if missing:
            break
    else:
        pytest.skip("no installed backend with periodic lacks one of the task options")
    (tmp_path / "sched_opt.py").write_text(textwrap.dedent(f"""\
        import anytask
        from anytask.testing import tasks
        anytask.periodic(tasks.add.using({_OPTIONS[missing[0]]}), every=5, args=(1, 2))
        """))
    url = spec.example.replace("6379", "1").replace("5672", "1")  # never contacted: the check comes first
    r = anytask("beat", url, "--tasks", "sched_opt", cwd=tmp_path)
    assert r.returncode == 2 and missing[0].value in r.stderr and "does not support" in r.stderr, r.stderr
