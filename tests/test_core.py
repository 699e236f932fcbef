"""Unit tests of the facade core: URLs, errors, options, registry, import isolation, typing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import anytask
from anytask import Feature, Status
from anytask.facade import backends
from anytask.facade.errors import (
    ConfigurationError,
    InvalidTask,
    InvalidURL,
    MissingDependency,
    NotSerializable,
    TaskNotRegistered,
    UnknownScheme,
    UnsupportedFeature,
)
from anytask.facade.records import ErrorInfo, TaskResult
from anytask.facade.url import mask, parse_url
from anytask.testing import tasks

ROOT = Path(__file__).resolve().parents[1]


# -- URLs -------------------------------------------------------------------------------------


def test_parse_url_splits_library_transport_and_params() -> None:
    u = parse_url("celery+amqp://guest:secret@127.0.0.1:5672//?result=redis://127.0.0.1:6379/4&timeout=2")
    assert (u.scheme, u.library, u.transport) == ("celery+amqp", "celery", "amqp")
    assert u.broker_url == "amqp://guest:secret@127.0.0.1:5672//"
    assert u.params == {"result": "redis://127.0.0.1:6379/4", "timeout": "2"}
    assert u.host == "127.0.0.1" and u.port == 5672
    assert parse_url("memory://").library == "memory"
    assert parse_url("huey+sqlite:///tmp/x.db").broker_url == "sqlite:///tmp/x.db"


def test_passwords_are_masked_in_repr_and_errors() -> None:
    u = parse_url("rq+redis://user:hunter2@localhost:6379/0")
    assert "hunter2" not in repr(u) and "hunter2" not in str(u) and "***" in u.masked
    assert mask("a redis://:pw@h:1/0 and amqp://u:p2@h//") == "a redis://:***@h:1/0 and amqp://u:***@h//"
    with pytest.raises(UnknownScheme) as ei:
        anytask.connect("nope+redis://user:hunter2@localhost:6379/0")
    assert "hunter2" not in str(ei.value)


@pytest.mark.parametrize("bad", ["", "   ", "redis-localhost", "rq+redis://host:notaport/0"])
def test_malformed_urls_are_explained(bad: str) -> None:
    with pytest.raises(InvalidURL) as ei:
        anytask.connect(bad)
    assert "URL" in str(ei.value)


def test_unknown_scheme_lists_valid_schemes() -> None:
    with pytest.raises(UnknownScheme) as ei:
        anytask.connect("kafka+redis://127.0.0.1:6379/0")
    msg = str(ei.value)
    assert "kafka+redis" in msg
    for scheme in backends.BACKENDS:
        assert f"{scheme}://" in msg


def test_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = backends.BACKENDS["rq+redis"]
    fake = backends.BackendSpec(spec.scheme, spec.adapter, spec.extra, ("not_installed_module_xyz",), spec.example)
    monkeypatch.setitem(backends.BACKENDS, "rq+redis", fake)
    with pytest.raises(MissingDependency) as ei:
        anytask.connect("rq+redis://127.0.0.1:6379/0")
    assert "pip install 'anytask[rq]'" in str(ei.value)


def test_connect_reads_anytask_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYTASK_URL", "memory://")
    assert anytask.connect().backend == "memory"
    monkeypatch.delenv("ANYTASK_URL")
    with pytest.raises(ConfigurationError, match="ANYTASK_URL"):
        anytask.connect()


# -- tasks and options ------------------------------------------------------------------------


def test_task_names_and_direct_call() -> None:
    assert tasks.add.name == "anytask.testing.tasks.add"
    assert tasks.add(2, 3) == 5
    assert anytask.get_task("anytask.testing.tasks.add") is tasks.add
    with pytest.raises(TaskNotRegistered, match="--tasks"):
        anytask.get_task("nowhere.nothing")


def test_using_overrides_options_without_touching_the_original() -> None:
    t = tasks.add.using(retries=3, queue="fast")
    assert (t.options.retries, t.options.queue) == (3, "fast")
    assert tasks.add.options.retries == 0 and tasks.add.options.queue == "default"
    with pytest.raises(ConfigurationError, match="unknown task option"):
        tasks.add.using(retires=3)


@pytest.mark.parametrize("opts, match", [
    ({"retries": -1}, "retries"), ({"timeout": 0}, "timeout"), ({"priority": 11}, "priority"),
    ({"queue": "bad queue"}, "queue"), ({"delay": 1, "at": __import__("datetime").datetime.now()}, "either"),
])
def test_bad_options_are_refused(opts: dict, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        tasks.add.using(**opts)


def test_decorator_rejects_main_and_unknown_options() -> None:
    def f() -> None: ...

    f.__module__ = "__main__"
    f.__qualname__ = "f"
    with pytest.raises(InvalidTask, match="__main__"):
        anytask.task(f)
    with pytest.raises(ConfigurationError, match="unknown @task option"):
        anytask.task(retires=2)(tasks.add.func)


def test_unsupported_feature_is_raised_before_enqueue() -> None:
    client = anytask.connect("memory://unsupported-check")
    with pytest.raises(UnsupportedFeature) as ei:
        client.submit(tasks.add.using(timeout=3), 1, 2)
    assert "memory" in str(ei.value) and "timeout" in str(ei.value)
    assert ei.value.feature.startswith("timeout")


def test_non_json_arguments_name_the_argument() -> None:
    client = anytask.connect("memory://json-check")
    with pytest.raises(NotSerializable, match="positional argument 1 of task 'anytask.testing.tasks.add'"):
        client.submit(tasks.add, 1, object())
    with pytest.raises(NotSerializable):
        client.submit(tasks.echo, float("nan"))


def test_records_round_trip_as_json() -> None:
    try:
        raise tasks.TaskBoom("x")
    except tasks.TaskBoom as exc:
        err = ErrorInfo.from_exception(exc)
    assert err.type == "anytask.testing.tasks.TaskBoom" and "TaskBoom: x" in err.traceback
    r = TaskResult(id="1", status=Status.FAILED, error=err, value=None, has_value=False)
    back = TaskResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r
    ok = TaskResult(id="2", status=Status.SUCCEEDED, value=None, has_value=True)
    assert TaskResult.from_dict(json.loads(json.dumps(ok.to_dict()))).has_value


def test_status_enum_is_closed() -> None:
    assert [s.value for s in Status] == ["UNKNOWN", "SCHEDULED", "QUEUED", "RUNNING", "RETRYING", "SUCCEEDED",
                                         "FAILED", "CANCELLED"]
    assert {s for s in Status if s.finished} == {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED}


def test_every_backend_declares_every_feature() -> None:
    for scheme, spec in backends.BACKENDS.items():
        try:
            cls = backends.load_adapter_class(spec)
        except MissingDependency:
            continue
        missing = [f.value for f in Feature if f not in cls.capabilities.features]
        assert not missing, f"{scheme} does not declare {missing}"
        for fs in cls.capabilities.features.values():
            assert fs.how, f"{scheme}: every declaration says how (or why not)"


# -- architecture -----------------------------------------------------------------------------

FORBIDDEN = ["celery", "kombu", "rq", "dramatiq", "huey", "taskiq", "redis", "pika", "aio_pika", "amqp"]


def test_core_imports_no_queue_or_broker_library() -> None:
    code = (
        "import sys, anytask, anytask.facade, anytask.cli\n"
        "c = anytask.connect('memory://')\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"the core imported {out.stdout.strip()}"


def test_facade_source_names_no_queue_library() -> None:
    for path in (ROOT / "anytask" / "facade").glob("*.py"):
        for line in path.read_text().splitlines():
            s = line.strip()
            if s.startswith(("import ", "from ")):
                root = s.split()[1].split(".")[0]
                assert root not in FORBIDDEN, f"{path.name}: {s}"


def test_facade_is_mypy_strict_clean() -> None:
    pytest.importorskip("mypy")
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "anytask/facade"], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_package_loads_the_facade_on_first_use_and_stays_typed(tmp_path: Path) -> None:
    # RQ's default worker imports a job's module in every forked process: a module under anytask must not
    # pull in the whole facade (docs/methodology.md, "Known limits"); the public names still work and type.
    out = subprocess.run([sys.executable, "-c", "import sys, anytask.bench.work; print('anytask.facade' in sys.modules);"
                          "import anytask; print(anytask.task is anytask.facade.task, len(anytask.__all__) > 40)"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "True", "True"]
    pytest.importorskip("mypy")
    snippet = tmp_path / "typed.py"
    snippet.write_text("import anytask\n\n@anytask.task\ndef add(x: int, y: int) -> int:\n    return x + y\n\n"
                       "anytask.connect('memory://').submit(add, 1, 'two')\n")
    res = subprocess.run([sys.executable, "-m", "mypy", "--strict", str(snippet)], capture_output=True, text=True,
                         cwd=ROOT)
    assert res.returncode == 1 and "submit" in res.stdout, res.stdout + res.stderr


def test_worker_help_explains_urls_and_tasks() -> None:
    out = subprocess.run([sys.executable, "-m", "anytask", "worker", "--help"], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    for needle in ("--tasks", "--concurrency", "--queues", "rq+redis://", "celery+amqp://", "?result=redis://",
                   "pip install 'anytask[rq]'", "SIGTERM"):
        assert needle in out.stdout


def test_worker_errors_are_clear() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "anytask", "worker", *args], capture_output=True, text=True,
                              cwd=ROOT, timeout=60)

    r = run("memory://", "--tasks", "no_such_module_abc")
    assert r.returncode == 2 and "cannot import task module 'no_such_module_abc'" in r.stderr
    r = run("memory://", "--tasks", "anytask.testing.tasks")
    assert r.returncode == 2 and "no worker" in r.stderr
    r = run("bogus+redis://u:pw@h:1/0", "--tasks", "anytask.testing.tasks")
    assert r.returncode == 2 and "unknown backend scheme" in r.stderr and "pw@" not in r.stderr


def test_capabilities_doc_is_generated_and_fresh() -> None:
    from anytask.capdoc import render

    committed = (ROOT / "docs" / "capabilities.md").read_text()
    assert committed == render(), "docs/capabilities.md is stale: run `anytask capabilities --write`"


def test_demo_urls_give_each_library_its_own_queue_prefix() -> None:
    # libraries on one RabbitMQ vhost declare same-named queues with different arguments: keep them apart
    from anytask.demo import default_urls

    prefixes: dict[str, set[str]] = {}
    for url in default_urls():
        u = parse_url(url)
        prefixes.setdefault(u.params.get("prefix", ""), set()).add(u.library)
    assert all(len(libs) == 1 for libs in prefixes.values()), prefixes
