"""Celery probes: Celery's own API (canvas, routing, rate_limit, control.inspect, beat) and its `celery` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from .common import (
    AMQP_URL,
    REDIS_URL,
    Lab,
    ProbeFailed,
    bin_path,
    delay_honoured,
    documentation_probe,
    mypy_check,
    n_params,
    rabbit_count,
    setup_probe,
    version_of,
    wait_until,
)
from .result import ProbeResult


def VERSION() -> str:
    return version_of("celery", "kombu")


TASKS = '''
import asyncio, os, time
from celery import Celery
from celery.signals import worker_ready
from kombu import Exchange, Queue
from kombu.serialization import register

Q = os.environ["PROBE_QUEUE"]
BROKER = os.environ.get("PROBE_BROKER", os.environ["PROBE_REDIS_URL"])
app = Celery("celtasks", broker=BROKER, backend=os.environ["PROBE_REDIS_URL"])
app.conf.update(task_default_queue=Q, task_default_exchange=Q, task_default_routing_key=Q,
                broker_connection_retry_on_startup=True, result_expires=600, worker_hijack_root_logger=False,
                worker_enable_remote_control=os.environ.get("PROBE_REMOTE", "1") == "1")
if os.environ.get("PROBE_MODE") == "priority":
    app.conf.update(task_queues=[Queue(Q, Exchange(Q), routing_key=Q, queue_arguments={"x-max-priority": 10})],
                    worker_prefetch_multiplier=1, task_acks_late=True)
if os.environ.get("PROBE_MODE") == "dlq":
    app.conf.update(task_queues=[Queue(Q, Exchange(Q), routing_key=Q, queue_arguments={
                        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": Q + ".dead"})],
                    task_acks_late=True, task_acks_on_failure_or_timeout=False, worker_prefetch_multiplier=1)
if os.environ.get("PROBE_MODE") == "routing":
    app.conf.task_routes = {"celtasks.on_a": {"queue": Q + ".a"}, "celtasks.on_b": {"queue": Q + ".b"}}
if os.environ.get("PROBE_MODE") == "serializer":
    import json as _j
    def _dumps(obj):
        return "PROBE" + _j.dumps(obj)
    def _loads(data):
        rec("loads")
        data = data.decode() if isinstance(data, bytes) else data
        assert data.startswith("PROBE"), data[:20]
        return _j.loads(data[5:])
    register("probe", _dumps, _loads, content_type="application/x-probe", content_encoding="utf-8")
    app.conf.update(task_serializer="probe", result_serializer="json", accept_content=["probe", "json"])
if os.environ.get("PROBE_MODE") == "beat":
    app.conf.beat_schedule = {"tick": {"task": "celtasks.mark", "schedule": 1.0, "args": ("tick",)}}

@worker_ready.connect
def _ready(**kw):
    rec("ready")

@app.task
def add(x, y):
    rec("add")
    return x + y

@app.task
def mul(x, y):
    return x * y

@app.task
def total(xs):
    return sum(xs)

@app.task
def mark(label):
    rec("mark", label=label)
    return label

@app.task(name="celtasks.on_a")
def on_a():
    rec("mark", label="a")

@app.task(name="celtasks.on_b")
def on_b():
    rec("mark", label="b")

@app.task(bind=True, max_retries=2, default_retry_delay=0)
def flaky(self, fails):
    n = count("flaky")
    rec("flaky", attempt=n)
    if n <= fails:
        raise self.retry(exc=RuntimeError("attempt %d" % n), countdown=0)
    return n

@app.task
def always_fails():
    rec("fail")
    raise RuntimeError("always fails")

@app.task(rate_limit="2/s")
def limited(i):
    rec("limited", i=i)
    return i

@app.task
async def aadd(x, y):
    await asyncio.sleep(0.01)
    rec("aadd")
    return x + y
'''


def _setup(lab: Lab, mode: str = "", broker: str | None = None, remote: bool = False) -> Any:
    import os

    os.environ["PROBE_MODE"] = mode
    os.environ["PROBE_REMOTE"] = "1" if remote else "0"
    if broker:
        os.environ["PROBE_BROKER"] = broker
    lab.write("celtasks.py", TASKS)
    import celtasks  # type: ignore[import-not-found]

    return celtasks


def _worker(lab: Lab, queues: str | None = None, pool: str = "solo", name: str = "worker", ready: bool = True) -> Any:
    w = lab.worker([bin_path("celery"), "-A", "celtasks", "worker", "-P", pool, "-c", "1", "-Q", queues or lab.queue,
                    "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING",
                    "-n", f"{lab.token}@%h"], name)
    if ready and not lab.wait_events("ready", 1, 30):
        raise ProbeFailed("celery worker not ready in 30 s: " + w.output())
    return w


def basic_queuing(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _worker(lab, ready=False)
    r = t.add.delay(2, 3)
    v = r.get(timeout=30)
    return lab.result("yes" if v == 5 else "no", "@app.task; add.delay(2, 3).get(); `celery -A m worker`",
                      f"result {v!r} from worker pid {[e['pid'] for e in lab.events('add')]}")


def retries(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _worker(lab, ready=False)
    v = t.flaky.delay(2).get(timeout=30)
    attempts = [e["attempt"] for e in lab.events("flaky")]
    ok = attempts == [1, 2, 3] and v == 3
    return lab.result("yes" if ok else "no", "@app.task(bind=True, max_retries=2); raise self.retry(exc=..., countdown=0)",
                      f"attempts {attempts}, final result {v!r}")


def scheduling_delay(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _worker(lab)
    t0 = time.time()
    t.mark.apply_async(("delayed",), countdown=2).get(timeout=30)
    lag = lab.events("mark")[0]["t"] - t0
    ok = delay_honoured(lag)
    return lab.result("yes" if ok else "no", "mark.apply_async(args, countdown=2)",
                      f"task ran {lag:.2f} s after apply_async(countdown=2)")


def scheduling_periodic(lab: Lab) -> ProbeResult:
    _setup(lab, "beat")
    _worker(lab)
    lab.worker([bin_path("celery"), "-A", "celtasks", "beat", "-s", str(lab.tmp / "beat-schedule"), "-l", "WARNING"],
               "beat")
    evs = lab.wait_events("mark", 3, 30)
    times = [round(e["t"] - evs[0]["t"], 2) for e in evs]
    ok = len(evs) >= 3
    return lab.result("yes" if ok else "no",
                      "app.conf.beat_schedule = {'tick': {'task': ..., 'schedule': 1.0}}; `celery -A m beat` + worker",
                      f"{len(evs)} periodic runs at +{times} s (beat is a separate process)"
                      + ("" if ok else "; " + lab.worker_logs()))


def priority(lab: Lab) -> ProbeResult:
    t = _setup(lab, "priority", broker=AMQP_URL)
    lab.rabbit_queue(lab.queue)
    for i in range(3):
        t.mark.apply_async((f"low{i}",), priority=1)
    for i in range(3):
        t.mark.apply_async((f"high{i}",), priority=9)
    _worker(lab, ready=False)
    evs = lab.wait_events("mark", 6, 30)
    order = [e["label"] for e in evs]
    ok = order[:3] == ["high0", "high1", "high2"] and len(order) == 6
    return lab.result("yes" if ok else "no",
                      "RabbitMQ queue with queue_arguments={'x-max-priority': 10}; apply_async(priority=1|9); "
                      "worker_prefetch_multiplier=1, task_acks_late=True",
                      f"3 priority-1 then 3 priority-9 tasks queued before the worker started; execution order {order} "
                      "(RabbitMQ broker; the Redis transport only emulates priorities with per-priority lists)")


def chaining(lab: Lab) -> ProbeResult:
    from celery import chain

    t = _setup(lab)
    _worker(lab, ready=False)
    v = chain(t.add.s(2, 3), t.mul.s(10))().get(timeout=30)
    return lab.result("yes" if v == 50 else "no", "celery.chain(add.s(2, 3), mul.s(10))().get()",
                      f"chain result {v!r} (add's result 5 passed into mul(5, 10))")


def groups(lab: Lab) -> ProbeResult:
    from celery import chord, group

    t = _setup(lab)
    _worker(lab, ready=False)
    v = group(t.add.s(i, i) for i in range(4))().get(timeout=30)
    c = chord([t.add.s(1, 1), t.add.s(2, 2)])(t.total.s()).get(timeout=30)
    ok = v == [0, 2, 4, 6] and c == 6
    return lab.result("yes" if ok else "no", "celery.group(add.s(i, i) for i in range(4))().get(); celery.chord(header)(callback)",
                      f"group result {v!r}; chord([add(1,1), add(2,2)])(total) -> {c!r}")


def rate_limiting(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _worker(lab)
    rs = [t.limited.delay(i) for i in range(6)]
    for r in rs:
        r.get(timeout=30)
    ts = sorted(e["t"] for e in lab.events("limited"))
    rate = (len(ts) - 1) / (ts[-1] - ts[0]) if ts[-1] > ts[0] else float("inf")
    ok = rate <= 2 * 1.25
    return lab.result("yes" if ok else "no", "@app.task(rate_limit='2/s')",
                      f"6 tasks queued at once ran over {ts[-1] - ts[0]:.2f} s = {rate:.2f} tasks/s (limit 2/s); "
                      "Celery documents the limit as per worker instance, not global")


def dead_letter_queues(lab: Lab) -> ProbeResult:
    t = _setup(lab, "dlq", broker=AMQP_URL)
    lab.rabbit_queue(lab.queue)
    dead = lab.rabbit_queue(lab.queue + ".dead")
    from .common import pika_channel

    with pika_channel() as ch:
        ch.queue_declare(dead, durable=True)
    _worker(lab, ready=False)
    t.always_fails.delay()
    lab.wait_events("fail", 1, 30)
    n = wait_until(lambda: rabbit_count(dead), 15)
    ok = bool(n)
    return lab.result(
        "partial" if ok else "no",
        "RabbitMQ queue_arguments={'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': Q+'.dead'}, "
        "task_acks_late=True, task_acks_on_failure_or_timeout=False",
        f"after the final failure the dead-letter queue holds {n} message(s)",
        missing="Celery has no dead-letter queue of its own: it only rejects the message, and the broker's "
                "dead-lettering (RabbitMQ DLX arguments declared by the user) does the rest; with defaults a "
                "failed task is acked and only its FAILURE state is kept in the result backend" if ok else None)


def result_storage(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _worker(lab, ready=False)
    tid = t.add.delay(20, 22).id
    from celery import Celery
    from celery.result import AsyncResult

    other = Celery("reader", broker=REDIS_URL, backend=REDIS_URL)
    r = AsyncResult(tid, app=other)
    v = r.get(timeout=30)
    return lab.result("yes" if v == 42 else "no", "Celery(backend='redis://...'); AsyncResult(id, app=fresh_app).get()",
                      f"result read by id through a separate app instance: {v!r} (state {r.state})")


def task_routing(lab: Lab) -> ProbeResult:
    t = _setup(lab, "routing")
    _worker(lab, queues=lab.queue + ".a")
    ra, rb = t.on_a.delay(), t.on_b.delay()
    ra.get(timeout=30)
    time.sleep(1.5)
    labels = [e["label"] for e in lab.events("mark")]
    ok = labels == ["a"] and rb.state == "PENDING"
    return lab.result("yes" if ok else "no", "app.conf.task_routes = {'celtasks.on_a': {'queue': Q.a}, ...}; "
                      "`celery worker -Q Q.a`", f"worker on Q.a ran {labels}; task routed to Q.b is {rb.state}")


def custom_serializers(lab: Lab) -> ProbeResult:
    t = _setup(lab, "serializer")
    r = t.add.delay(1, 2)
    raw = lab.redis.lrange(lab.queue, 0, -1)
    env = json.loads(raw[0]) if raw else {}
    _worker(lab, ready=False)
    v = r.get(timeout=30)
    loads = any(e["name"] == "loads" for e in lab.events())
    ok = env.get("content-type") == "application/x-probe" and v == 3 and loads
    return lab.result("yes" if ok else "no",
                      "kombu.serialization.register('probe', dumps, loads, content_type=...); task_serializer='probe'",
                      f"queued message content-type {env.get('content-type')!r}, body starts "
                      f"{str(env.get('body'))[:12]!r}; worker decoded with the custom loads: {loads}; result {v!r}")


def monitoring_apis(lab: Lab) -> ProbeResult:
    t = _setup(lab, remote=True)
    _worker(lab)
    r = t.mark.apply_async(("later",), countdown=60)
    found = None

    def look() -> Any:
        nonlocal found
        sched = t.app.control.inspect(timeout=2.0).scheduled() or {}
        ids = [e["request"]["id"] for v in sched.values() for e in v]
        found = sched
        return r.id in ids
    ok = wait_until(look, 15, 0.5)
    r.revoke()
    return lab.result("yes" if ok else "no", "app.control.inspect().scheduled() (also active/reserved/stats)",
                      f"an ETA task queued 60 s ahead was listed by the worker: {bool(ok)} "
                      f"({sum(len(v) for v in (found or {}).values())} scheduled entry)")


MIN_TASKS = '''
from celery import Celery
app = Celery("mintasks", broker="{url}", backend="{url}")
@app.task
def add(x, y):
    return x + y
'''


def _minimal(lab: Lab) -> tuple[bool, str, list[Any]]:
    tasks = lab.write("mintasks.py", MIN_TASKS.format(url=REDIS_URL), preamble=False)
    prod = lab.write("minprod.py", "from mintasks import add\nprint(add.delay(2, 3).get(timeout=30))\n", preamble=False)
    lab.worker([bin_path("celery"), "-A", "mintasks", "worker", "-P", "solo", "-l", "WARNING", "-Q", "celery",
                "--without-gossip", "--without-mingle", "--without-heartbeat"])
    out = subprocess.run(check=False, args=[sys.executable, str(prod)], cwd=lab.tmp, env=lab.env(), capture_output=True, text=True,
                         timeout=40)
    return out.stdout.strip() == "5", f"producer printed {out.stdout.strip()!r} {out.stderr[-200:]}", [tasks, prod]


def setup_simplicity(lab: Lab) -> ProbeResult:
    ok, detail, files = _minimal(lab)
    return setup_probe(lab, files, ["celery worker"], ["celery[redis]"], ["broker", "backend"], ok, detail)


def configuration(lab: Lab) -> ProbeResult:
    from celery.app.defaults import NAMESPACES, flatten

    from .rq import _cli_options, config_verdict

    ok, detail, _ = _minimal(lab)
    n_settings = len(list(flatten(NAMESPACES)))
    n_cli = _cli_options([bin_path("celery"), "-A", "mintasks", "worker", "--help"], lab)
    return config_verdict(lab, ok, detail, ["broker", "backend"],
                          {"celery.app.defaults settings": n_settings, "celery worker --help options": n_cli,
                           "Celery() parameters": n_params(__import__("celery").Celery.__init__)})


def debugging_tools(lab: Lab) -> ProbeResult:
    t = _setup(lab, remote=True)
    _worker(lab)
    out = subprocess.run(check=False, args=[bin_path("celery"), "-A", "celtasks", "inspect", "ping", "-t", "3"], cwd=lab.tmp,
                         env=lab.env(), capture_output=True, text=True, timeout=30).stdout
    cli_ok = "pong" in out
    t.app.conf.task_always_eager = True
    v = t.add.delay(4, 5).get()
    sync_ok = v == 9
    obs = (f"`celery -A m inspect ping` answered: {' '.join(out.split())[:120]!r}; "
           f"task_always_eager ran in-process with result {v!r}")
    api = "`celery inspect ping` (also inspect active/scheduled, `celery events`); app.conf.task_always_eager"
    if cli_ok and sync_ok:
        return lab.result("yes", api, obs)
    return lab.result("partial" if (cli_ok or sync_ok) else "no", api, obs,
                      missing=("CLI inspection did not answer" if not cli_ok else "eager mode failed")
                      if (cli_ok or sync_ok) else None)


def documentation(lab: Lab) -> ProbeResult:
    return documentation_probe(lab, "celery", "celery")


def type_safety(lab: Lab) -> ProbeResult:
    header = '''
from celery import Celery
app = Celery("m")
@app.task
def add(x: int, y: int) -> int:
    return x + y
'''
    good, flagged, out = mypy_check(lab, "add.delay(1, 2)\n", 'add.delay("one", 2)\n', header, "celery")
    api = "mypy on `add.delay('one', 2)` where @app.task def add(x: int, y: int)"
    if good and flagged:
        return lab.result("yes", api, out)
    return lab.result("no", api, f"wrong argument type not flagged ({out})" if good else out)


def async_support(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _worker(lab, ready=False)
    r = t.aadd.delay(2, 3)
    try:
        v = r.get(timeout=20)
    except Exception as exc:  # noqa: BLE001
        v = f"{type(exc).__name__}: {exc}"
    ran = bool(lab.events("aadd"))
    ok = v == 5 and ran
    return lab.result("yes" if ok else "no", "@app.task on an `async def` function; aadd.delay(2, 3).get()",
                      f"result {str(v)[:120]!r}; coroutine body executed: {ran}")


PROBES = {name: globals()[name] for name in (
    "basic_queuing", "retries", "scheduling_delay", "scheduling_periodic", "priority", "chaining", "groups",
    "rate_limiting", "dead_letter_queues", "result_storage", "task_routing", "custom_serializers", "monitoring_apis",
    "setup_simplicity", "configuration", "debugging_tools", "documentation", "type_safety", "async_support")}
