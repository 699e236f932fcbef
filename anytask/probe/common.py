"""Shared machinery of the probes: the lab a probe runs in (its own token, tmp dir, Redis DBs, RabbitMQ
queues), worker subprocesses that are always stopped, event recording, static checks and mypy."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .result import ProbeResult

REDIS_HOST = os.environ.get("ANYTASK_PROBE_REDIS", "127.0.0.1:6379")
BROKER_DB = 13  # library brokers / result stores
EVENTS_DB = 14  # events recorded by the probe tasks
REDIS_URL = f"redis://{REDIS_HOST}/{BROKER_DB}"
EVENTS_URL = f"redis://{REDIS_HOST}/{EVENTS_DB}"
AMQP_URL = os.environ.get("ANYTASK_PROBE_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
AMQP_URL_NOSLASH = AMQP_URL.rstrip("/") + "/"  # aio-pika / pika style (default vhost)

# Prepended to every generated task module: rec() appends an event (name, time, data) to Redis DB 14.
REC_PREAMBLE = '''
import json as _json, os as _os, time as _time
import redis as _redis
_REC = _redis.Redis.from_url(_os.environ["PROBE_EVENTS_URL"])
_TOKEN = _os.environ["PROBE_TOKEN"]
def rec(name, **data):
    data.update(name=name, t=_time.time(), pid=_os.getpid())
    _REC.rpush("probe:ev:" + _TOKEN, _json.dumps(data))
def count(name):
    return _REC.incr("probe:cnt:" + _TOKEN + ":" + name)
'''


def version_of(*dists: str) -> str:
    out = []
    for d in dists:
        try:
            out.append(f"{d} {importlib.metadata.version(d)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{d} (not installed)")
    return " + ".join(out)


def bin_path(name: str) -> str:
    """A console script installed next to this interpreter (the venv's own CLI)."""
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else name


class ProbeFailed(Exception):
    """A probe could not decide; the message becomes the `unknown` reason."""


class Worker:
    """A library worker (or scheduler) subprocess in its own session; stop() ends the whole group."""

    def __init__(self, lab: Lab, argv: list[str], name: str):
        self.lab, self.argv, self.name = lab, argv, name
        self.log_path = lab.tmp / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, cwd=self.lab.tmp, env=self.lab.env(), stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        with open(self.lab.tmp / "pids", "a") as fh:  # the runner kills these groups even if we hang
            fh.write(f"{self.proc.pid}\n")
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 6.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftover children of the group
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:
            pass
        return self.proc.returncode

    def output(self, tail: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""


class Lab:
    """Everything one probe owns. `token` names its queues, keys and events."""

    def __init__(self, library: str, feature: str, tmp: Path, version: str):
        self.library, self.feature, self.tmp, self.version = library, feature, tmp, version
        self.token = f"{library}-{feature}-{os.getpid()}".replace("_", "-")
        self.queue = f"probe.{self.token}"
        self.workers: list[Worker] = []
        import redis

        self.redis = redis.Redis.from_url(REDIS_URL)
        self.events_redis = redis.Redis.from_url(EVENTS_URL)
        sys.path.insert(0, str(tmp))
        os.environ.update(self.env_vars())

    # --- environment and files
    def env_vars(self) -> dict[str, str]:
        return {"PROBE_EVENTS_URL": EVENTS_URL, "PROBE_TOKEN": self.token, "PROBE_QUEUE": self.queue,
                "PROBE_REDIS_URL": REDIS_URL, "PROBE_AMQP_URL": AMQP_URL}

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env_vars())
        env["PYTHONPATH"] = os.pathsep.join([str(self.tmp)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def write(self, name: str, source: str, preamble: bool = True) -> Path:
        path = self.tmp / name
        path.write_text((REC_PREAMBLE if preamble else "") + textwrap.dedent(source))
        return path

    def rabbit_queue(self, name: str) -> str:
        """Register a RabbitMQ queue name (must start with 'probe.') for deletion after the probe."""
        assert name.startswith("probe."), name
        with open(self.tmp / "queues", "a") as fh:
            fh.write(name + "\n")
        return name

    # --- workers
    def worker(self, argv: list[str], name: str = "worker") -> Worker:
        w = Worker(self, argv, name).start()
        self.workers.append(w)
        return w

    def stop_workers(self) -> None:
        for w in reversed(self.workers):
            w.stop()

    def worker_logs(self) -> str:
        return "\n".join(f"--- {w.name}: {w.output(800)}" for w in self.workers)

    # --- events
    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        raw = self.events_redis.lrange("probe:ev:" + self.token, 0, -1)
        evs = [json.loads(x) for x in raw]
        return [e for e in evs if name is None or e["name"] == name]

    def wait_events(self, name: str, n: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            evs = self.events(name)
            if len(evs) >= n or time.monotonic() > deadline:
                return evs
            for w in self.workers:
                if not w.alive():
                    raise ProbeFailed(f"{w.name} exited early (code {w.proc.returncode if w.proc else None}): "
                                      f"{w.output(600)}")
            time.sleep(0.1)

    # --- results
    def result(self, verdict: str, api: str, observed: str, missing: str | None = None, plugin: str | None = None,
               measure: dict[str, Any] | None = None, holds: bool | None = None) -> ProbeResult:
        return ProbeResult(self.library, self.feature, verdict, self.version, api, observed, missing, plugin,
                           measure=measure, holds=holds)

    def cleanup(self) -> None:
        self.stop_workers()
        try:
            for db in (self.redis, self.events_redis):
                keys = list(db.scan_iter(match=f"*{self.token}*", count=500))
                if keys:
                    db.delete(*keys)
        except Exception:  # noqa: BLE001, S110 - best-effort cleanup; the runner flushes DB 13/14 at the end
            pass


def delay_honoured(lag: float, asked: float = 2.0) -> bool:
    """The delay probes' one decision rule: the task ran no earlier than ``asked`` - 1.1 s (schedulers
    that keep whole seconds) and no later than ``asked`` + 10 s after it was sent."""
    return asked - 1.1 <= lag <= asked + 10


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


# --- static checks -------------------------------------------------------------------------------

def package_dir(module: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ProbeFailed(f"cannot locate package {module}")
    return Path(next(iter(spec.submodule_search_locations)))


def grep_package(module: str, pattern: str, flags: int = re.IGNORECASE) -> list[str]:
    """Files:lines of the installed package's source matching the regex (a documented static check)."""
    rx = re.compile(pattern, flags)
    root = package_dir(module)
    hits = []
    for path in sorted(root.rglob("*.py")):
        if "tests" in path.relative_to(root).parts:
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if rx.search(line):
                hits.append(f"{path.relative_to(root.parent)}:{i}")
    return hits


def mypy_check(lab: Lab, good: str, bad: str, header: str, module: str = "") -> tuple[bool, bool, str]:
    """Type-check two snippets with mypy: (good call accepted, wrong-argument call flagged, mypy output)."""
    cache = Path(os.environ.get("ANYTASK_PROBE_MYPY_CACHE", str(lab.tmp / ".mypy_cache")))
    out = []
    results = []
    for name, body in (("good", good), ("bad", bad)):
        path = lab.tmp / f"typing_{name}.py"
        path.write_text(textwrap.dedent(header) + "\n" + body)
        proc = subprocess.run(check=False, args=[sys.executable, "-m", "mypy", "--no-error-summary", "--hide-error-context", "--ignore-missing-imports",
                               "--cache-dir", str(cache), "--follow-imports=silent", str(path)],
                              capture_output=True, text=True, cwd=lab.tmp, timeout=150)
        text = (proc.stdout + proc.stderr).strip()
        out.append(f"[{name}] exit {proc.returncode}: {text[:400] or 'no errors'}")
        results.append(proc.returncode)
    if module:
        out.insert(0, f"{module} ships py.typed: {(package_dir(module) / 'py.typed').exists()}")
    return results[0] == 0, results[1] != 0, " | ".join(out)


def docstring_coverage(module: str) -> tuple[int, int, list[str]]:
    """Public callables/classes reachable from the package's top-level namespace, and how many have docstrings."""
    import importlib
    import inspect

    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None) or [n for n in dir(mod) if not n.startswith("_")]
    total, documented, undocumented = 0, 0, []
    for n in names:
        obj = getattr(mod, n, None)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        total += 1
        if (inspect.getdoc(obj) or "").strip():
            documented += 1
        else:
            undocumented.append(n)
    return documented, total, undocumented


def doc_url(dist: str) -> str | None:
    meta = importlib.metadata.metadata(dist)
    for v in meta.get_all("Project-URL") or []:
        label, _, url = v.partition(",")
        if re.search(r"doc", label, re.IGNORECASE):
            return url.strip()
    home = meta.get("Home-page")
    if home and re.search(r"readthedocs|docs?\.", home):
        return home
    return None


def documentation_probe(lab: Lab, dist: str, module: str) -> ProbeResult:
    """Documentation proxy: a documentation URL declared in the package metadata, and docstring coverage
    of the public top-level API (>= 70%)."""
    url = doc_url(dist)
    documented, total, undocumented = docstring_coverage(module)
    ratio = documented / total if total else 0.0
    measure = {"doc_url": url, "public_api": total, "with_docstring": documented, "coverage": round(ratio, 3)}
    observed = (f"package metadata documentation URL: {url or 'none'}; {documented}/{total} public top-level "
                f"classes/functions of `{module}` have docstrings ({ratio:.0%})"
                + (f"; without: {', '.join(undocumented[:8])}" if undocumented else ""))
    api = f"importlib.metadata.metadata({dist!r})['Project-URL'], inspect.getdoc over {module}.__all__/dir({module})"
    if url and ratio >= 0.7:
        return lab.result("yes", api, observed, measure=measure)
    if url or ratio >= 0.7:
        missing = "no documentation URL in package metadata" if not url else f"docstring coverage {ratio:.0%} < 70%"
        return lab.result("partial", api, observed, missing=missing, measure=measure)
    return lab.result("no", api, observed, measure=measure)


@contextmanager
def pika_channel() -> Iterator[Any]:
    import logging

    import pika

    logging.getLogger("pika").setLevel(logging.WARNING)
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL_NOSLASH))
    try:
        yield conn.channel()
    finally:
        conn.close()


def rabbit_count(queue: str) -> int | None:
    """Messages ready in a RabbitMQ queue (None if the queue does not exist)."""
    import pika.exceptions

    try:
        with pika_channel() as ch:
            return int(ch.queue_declare(queue, passive=True).method.message_count)
    except pika.exceptions.ChannelClosedByBroker:
        return None


def rabbit_delete(queues: list[str]) -> None:
    if not queues:
        return
    import pika.exceptions

    try:
        with pika_channel() as ch:
            for q in queues:
                if not q.startswith("probe."):
                    continue
                for op in ("queue_delete", "exchange_delete"):  # celery/taskiq name an exchange like the queue
                    try:
                        getattr(ch, op)(q)
                    except pika.exceptions.ChannelClosedByBroker:
                        ch = ch.connection.channel()
    except Exception:  # noqa: BLE001, S110 - best-effort cleanup must not turn a probe result into an error
        pass


def loc(path: Path) -> int:
    """Non-blank, non-comment lines."""
    return sum(1 for ln in path.read_text().splitlines() if ln.strip() and not ln.strip().startswith("#"))


def setup_probe(lab: Lab, source_files: list[Path], processes: list[str], packages: list[str],
                config_keys: list[str], ran: bool, detail: str) -> ProbeResult:
    """Setup-simplicity proxy from the basic-queuing experiment's own files: lines of code of the minimal
    producer+worker, processes besides the broker, packages to install, configuration keys."""
    lines = sum(loc(p) - REC_PREAMBLE.count("\n") + 1 if "rec(" in p.read_text() else loc(p) for p in source_files)
    measure = {"loc": lines, "processes": len(processes), "packages": len(packages), "config_keys": len(config_keys)}
    observed = (f"minimal producer+worker that ran ({detail}): {lines} lines of code (recording helper excluded), "
                f"processes besides the broker: {processes}, packages: {packages}, configuration keys: "
                f"{config_keys or 'none'}")
    api = "the basic-queuing experiment's files, counted"
    if not ran:
        return lab.result("unknown", api, "the minimal producer+worker did not run: " + detail, measure=measure)
    if lines <= 15 and len(processes) <= 1 and len(packages) <= 2 and len(config_keys) <= 2:
        return lab.result("yes", api, observed, measure=measure)
    if lines <= 30 and len(processes) <= 2:
        missing = "exceeds the simple threshold (<=15 LOC, 1 process, <=2 packages, <=2 config keys)"
        return lab.result("partial", api, observed, missing=missing, measure=measure)
    return lab.result("no", api, observed, measure=measure)


def window_counts(ts: list[float], limit: int, skew: float = 0.02) -> tuple[int, list[int], bool]:
    """Executions per aligned 1-s window. Returns (max count, counts, within limit). An execution recorded less
    than `skew` seconds after a window boundary may have acquired its slot in the previous window (the time is
    recorded just after acquiring); it is moved there if that makes the counts fit the limit."""
    per: dict[int, int] = {}
    for x in ts:
        per[int(x)] = per.get(int(x), 0) + 1
    counts = [per[k] for k in sorted(per)]
    if max(counts) <= limit:
        return max(counts), counts, True
    adj = dict(per)
    for x in sorted(ts):
        w = int(x)
        if adj[w] > limit and x - w < skew and adj.get(w - 1, 0) < limit:
            adj[w] -= 1
            adj[w - 1] = adj.get(w - 1, 0) + 1
    return max(counts), counts, max(adj.values()) <= limit


def n_params(func: Any) -> int:
    """Keyword parameters of a constructor/function (self, *args, **kwargs excluded)."""
    import inspect

    return sum(1 for n, p in inspect.signature(func).parameters.items()
               if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
