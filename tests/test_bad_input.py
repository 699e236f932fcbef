"""Bad input outside a running backend (issue 7): tasks that workers cannot import, bad URLs,
missing extras, wrong credentials, a dead or silent broker. Each asserts the exact error type and
message; every broker is a test-owned port or process (a closed port, a socket that never answers,
a Redis started here with a password) or the RabbitMQ under test with a wrong password.

Backend-parametrised cases that need a real worker are in anytask/testing/bad_input.py.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import anytask
from anytask.facade import backends
from anytask.facade.errors import (
    BrokerAuthFailed,
    BrokerUnavailable,
    InvalidTask,
    InvalidURL,
    UnknownScheme,
)
from anytask.facade.serialization import DEFAULT_MAX_PAYLOAD
from anytask.testing import tasks
from anytask.testing.backends import AMQP, answers

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
SECRET = "s3cr3t-pw"
BOUND = 10.0  # generous: catches a hang, does not measure speed
BROKER_SCHEMES = [s for s in backends.BACKENDS if s != "memory"]
AMQP_HOSTPORT = AMQP.rpartition("@")[2]


def _run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


# -- tasks workers cannot import ------------------------------------------------------------------


def test_lambda_is_refused_at_decoration() -> None:
    with pytest.raises(InvalidTask) as ei:
        anytask.task(lambda: 1)
    assert str(ei.value) == (f"a lambda cannot be a task ({__name__}.test_lambda_is_refused_at_decoration.<locals>."
                             "<lambda>): workers import tasks by name; define it with 'def' at module level")


def test_nested_function_is_refused_at_decoration() -> None:
    def inner() -> int:
        return 1

    with pytest.raises(InvalidTask) as ei:
        anytask.task(retries=1)(inner)
    assert str(ei.value) == (f"{__name__}.test_nested_function_is_refused_at_decoration.<locals>.inner is not "
                             "defined at module level: workers import tasks by name, so define the function at "
                             "the top level of an importable module")


def test_main_function_is_refused_at_decoration(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import anytask

        try:
            @anytask.task
            def job() -> int:
                return 1
        except anytask.InvalidTask as exc:
            print("InvalidTask:", exc)
    """))
    out = subprocess.run([PY, str(script)], capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == ("InvalidTask: job is defined in __main__, which workers cannot import; move it "
                                  "into a module (e.g. myapp/tasks.py) and import it from there"), out.stderr


# -- URLs and extras ------------------------------------------------------------------------------


def test_malformed_url_is_named_with_the_password_masked() -> None:
    with pytest.raises(InvalidURL) as ei:
        anytask.connect(f"rq+redis://:{SECRET}@127.0.0.1:notaport/0")
    assert str(ei.value) == ("malformed backend URL 'rq+redis://:***@127.0.0.1:notaport/0': Port could not be "
                             "cast to integer value as 'notaport'")
    with pytest.raises(InvalidURL) as ei:
        anytask.connect(f"guest:{SECRET}@127.0.0.1:5672")
    assert str(ei.value) == ("malformed backend URL 'guest:***@127.0.0.1:5672': expected "
                             "'<library>+<broker>://...', e.g. 'rq+redis://127.0.0.1:6379/0'")


def test_unknown_scheme_is_named_with_the_password_masked() -> None:
    with pytest.raises(UnknownScheme) as ei:
        anytask.connect(f"kafka+amqp://guest:{SECRET}@127.0.0.1:5672//")
    valid = ", ".join(f"{s}://" for s in backends.BACKENDS)
    assert str(ei.value) == (f"unknown backend scheme 'kafka+amqp' in 'kafka+amqp://guest:***@127.0.0.1:5672//'; "
                             f"valid schemes: {valid}")


@pytest.mark.parametrize("scheme", BROKER_SCHEMES)
def test_missing_extra_names_the_url_and_the_pip_command(scheme: str) -> None:
    """The library's import really fails (None in sys.modules), in a fresh interpreter."""
    spec = backends.BACKENDS[scheme]
    blocked = spec.requires[0]
    url = spec.example.replace("guest:guest@", f"guest:{SECRET}@").replace("127.0.0.1:6379", f":{SECRET}@127.0.0.1:6379")
    out = _run_python(f"""
        import sys
        sys.modules[{blocked!r}] = None  # the import machinery now raises ImportError for it
        import anytask
        try:
            anytask.connect({url!r})
        except anytask.MissingDependency as exc:
            print("MissingDependency:", exc)
    """)
    masked = anytask.mask(url)
    assert out.stdout.strip() == (
        f"MissingDependency: backend {scheme!r} needs the Python package providing {blocked!r} (import of "
        f"{blocked} halted; None in sys.modules); install it with: pip install 'anytask[{spec.extra}]' "
        f"(needed by {masked})"), out.stderr
    assert SECRET not in out.stdout + out.stderr


# -- a dead or silent broker ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel completes the handshake) and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


@pytest.fixture(scope="module")
def closed_port() -> int:
    return _free_port()


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis owned by this module, with ``requirepass``: host:port (the password is ``rightpw``)."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--requirepass", "rightpw", "--dir", str(tmp_path_factory.mktemp("redis"))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not answers("127.0.0.1", port, 0.2):
            assert time.monotonic() < deadline and proc.poll() is None, "test Redis did not start"
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _broker_url(scheme: str, broker: str, result: str, tmp: Path) -> str:
    """``scheme`` with its broker at ``broker`` (host:port) and, for AMQP, its store at ``result``."""
    if scheme == "huey+sqlite":
        (tmp / "a-file").write_text("")  # a file where the database's directory should be
        return f"huey+sqlite:///{tmp}/a-file/huey.db?timeout=1"
    if scheme.endswith("+amqp"):
        return f"{scheme}://guest:{SECRET}@{broker}/?result=redis://:{SECRET}@{result}/0&timeout=1"
    return f"{scheme}://:{SECRET}@{broker}/0?timeout=1"


def _timed(fn: object, *args: object, **kwargs: object) -> tuple[BaseException, float]:
    t0 = time.monotonic()
    with pytest.raises(BrokerUnavailable) as ei:
        fn(*args, **kwargs)  # type: ignore[operator]
    return ei.value, time.monotonic() - t0


def _check_message(exc: BaseException, port: str) -> None:
    msg = str(exc)
    assert SECRET not in msg, msg
    assert port in msg, msg  # names where it tried
    assert "check the url" in msg.lower() or "not usable" in msg, msg  # and what to do


@pytest.mark.parametrize("kind", ["closed", "silent"])
@pytest.mark.parametrize("scheme", BROKER_SCHEMES)
def test_broker_down_raises_broker_unavailable_in_bounded_time(scheme: str, kind: str, closed_port: int,
                                                               silent_port: int, tmp_path: Path) -> None:
    if scheme == "huey+sqlite" and kind == "silent":
        pytest.skip("a SQLite file has no port to stay silent on (an unusable path is the 'closed' case)")
    dead = f"127.0.0.1:{closed_port if kind == 'closed' else silent_port}"
    url = _broker_url(scheme, dead, dead, tmp_path)
    with anytask.connect(url) as client:
        exc, took = _timed(client.submit, tasks.add, 1, 2)
        assert took < BOUND, f"submit took {took:.1f}s"
        _check_message(exc, dead if scheme != "huey+sqlite" else "a-file/huey.db")
        exc, took = _timed(client.status, uuid.uuid4().hex)
        assert took < BOUND, f"status took {took:.1f}s"
        _check_message(exc, dead if scheme != "huey+sqlite" else "a-file/huey.db")
        exc, took = _timed(client.result, uuid.uuid4().hex, timeout=1)
        assert took < BOUND, f"result took {took:.1f}s"


@pytest.mark.parametrize("kind", ["closed", "silent"])
@pytest.mark.parametrize("scheme", [s for s in BROKER_SCHEMES if s.endswith("+amqp")])
def test_amqp_down_leaves_nothing_half_written(scheme: str, kind: str, closed_port: int, silent_port: int,
                                               own_redis: str, tmp_path: Path) -> None:
    """The state store answers, the broker does not: no record claims QUEUED, no unique key stays claimed."""
    dead = f"127.0.0.1:{closed_port if kind == 'closed' else silent_port}"
    url = _broker_url(scheme, dead, own_redis, tmp_path).replace(f":{SECRET}@{own_redis}", f":rightpw@{own_redis}")
    store = redis.Redis.from_url(f"redis://:rightpw@{own_redis}/0")
    store.flushdb()
    with anytask.connect(url) as client:
        attempts = [tasks.add]
        if client.capabilities.supports(anytask.Feature.UNIQUE):
            attempts.append(tasks.add.using(unique_key=f"k-{uuid.uuid4().hex}"))
        for t in attempts:
            exc, took = _timed(client.submit, t, 1, 2)
            assert took < BOUND
            _check_message(exc, dead)
    assert sorted(store.keys("*")) == [], "a failed submit left keys behind"


# -- wrong credentials -------------------------------------------------------------------------------


_REDIS_AUTH_DETAIL = {
    "wrong": "invalid username-password pair or user is disabled.",
    "none": "Authentication required.",
}


@pytest.mark.parametrize("password", ["wrong", "none"])
@pytest.mark.parametrize("scheme", [s for s in BROKER_SCHEMES if s.endswith("+redis")])
def test_redis_refusing_the_password_is_named(scheme: str, password: str, own_redis: str) -> None:
    cred = f":{SECRET}@" if password == "wrong" else ""
    url = f"{scheme}://{cred}{own_redis}/0?timeout=1"
    with anytask.connect(url) as client:
        for call in (lambda: client.submit(tasks.add, 1, 2), lambda: client.status(uuid.uuid4().hex)):
            t0 = time.monotonic()
            with pytest.raises(BrokerAuthFailed) as ei:
                call()
            assert time.monotonic() - t0 < BOUND
            msg = str(ei.value)
            assert SECRET not in msg
            assert f"{own_redis}/0" in msg and " refused the user name or password (" in msg, msg
            assert msg.endswith(f"({_REDIS_AUTH_DETAIL[password]}); check the credentials in the URL (RabbitMQ: "
                                "rabbitmqctl list_users; Redis: ACL LIST or requirepass)"), msg


@pytest.mark.parametrize("scheme", [s for s in BROKER_SCHEMES if s.endswith("+amqp")])
def test_rabbitmq_refusing_the_password_is_named(scheme: str, own_redis: str) -> None:
    host, _, port = AMQP_HOSTPORT.rpartition(":")
    if not answers(host, int(port)):
        pytest.skip(f"no RabbitMQ on {AMQP_HOSTPORT}")
    url = f"{scheme}://guest:{SECRET}@{AMQP_HOSTPORT}/?result=redis://:rightpw@{own_redis}/0&timeout=1"
    with anytask.connect(url) as client:
        t0 = time.monotonic()
        with pytest.raises(BrokerAuthFailed) as ei:
            client.submit(tasks.add, 1, 2)
        assert time.monotonic() - t0 < BOUND
    msg = str(ei.value)
    assert SECRET not in msg
    assert f"guest:***@{AMQP_HOSTPORT}/" in msg and " refused the user name or password (" in msg, msg
    assert "ACCESS_REFUSED" in msg and msg.endswith(
        "check the credentials in the URL (RabbitMQ: rabbitmqctl list_users; Redis: ACL LIST or requirepass)"), msg


# -- the payload limit's configuration -----------------------------------------------------------------


def test_max_payload_is_validated_and_documented() -> None:
    assert anytask.connect("memory://limits").max_payload == DEFAULT_MAX_PAYLOAD == 1024 * 1024
    assert anytask.connect("memory://limits?max_payload=0").max_payload == 0
    assert anytask.connect("memory://limits?max_payload=10", max_payload=20).max_payload == 20
    with pytest.raises(anytask.ConfigurationError) as ei:
        anytask.connect("memory://limits?max_payload=1MB")
    assert str(ei.value) == "max_payload='1MB' must be a number of bytes >= 0 (0: no limit; default 1048576)"
    unlimited = anytask.connect("memory://limits?max_payload=0")
    assert unlimited.submit(tasks.echo, "z" * (DEFAULT_MAX_PAYLOAD + 1)).result(timeout=10) == "z" * (DEFAULT_MAX_PAYLOAD + 1)
    assert "1 MiB" in (ROOT / "docs" / "errors.md").read_text()


# -- an async task on a backend that cannot run it ---------------------------------------------------
# Every shipped backend runs async tasks, so the refusal is shown on a backend declared without them:
# the in-process engine with ASYNC_TASKS taken out of its declaration (the check reads only that).

from anytask.adapters.memory import MemoryAdapter  # noqa: E402
from anytask.facade.capabilities import Feature, unsupported  # noqa: E402
from anytask.facade.client import supporting_backends  # noqa: E402
from anytask.testing.bad_input import enqueue_calls  # noqa: E402


class SyncOnlyAdapter(MemoryAdapter):
    capabilities = dataclasses.replace(MemoryAdapter.capabilities, features={
        **MemoryAdapter.capabilities.features, Feature.ASYNC_TASKS: unsupported("this engine runs only def functions")})


def test_async_task_on_a_backend_without_async_is_refused_at_submit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(backends.BACKENDS, "synconly", backends.BackendSpec(
        "synconly", f"{__name__}:SyncOnlyAdapter", "", (), "synconly://"))
    can = supporting_backends(Feature.ASYNC_TASKS)
    assert "synconly" not in can and "memory" in can
    client = anytask.connect("synconly://async-check")
    with enqueue_calls(client) as calls, pytest.raises(anytask.UnsupportedFeature) as ei:
        client.submit(tasks.async_add, 1, 2)
    assert calls == []
    assert str(ei.value) == ("backend 'synconly' does not support async_tasks (task anytask.testing.tasks.async_add): "
                             f"this engine runs only def functions (supported by: {', '.join(can)})")
    assert client.submit(tasks.add, 1, 2).result(timeout=10) == 3  # sync tasks still run
