"""Huey probes: Huey's own API (tasks, pipelines, group/chord, rate_limit, storages) and `huey_consumer`."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from .common import (
    REDIS_URL,
    Lab,
    ProbeFailed,
    bin_path,
    delay_honoured,
    documentation_probe,
    mypy_check,
    setup_probe,
    version_of,
    wait_until,
    window_counts,
)
from .result import ProbeResult


def VERSION() -> str:
    return version_of("huey")


TASKS = '''
import os, time
from huey import RedisHuey, PriorityRedisHuey, crontab
from huey.serializer import Serializer
from huey.signals import SIGNAL_EXECUTING

NAME = "probe." + os.environ["PROBE_TOKEN"]
URL = os.environ["PROBE_REDIS_URL"]
MODE = os.environ.get("PROBE_MODE", "")

class ProbeSerializer(Serializer):
    import json as _j
    def _serialize(self, data):
        return b"PROBE" + __import__("pickle").dumps(data)
    def _deserialize(self, data):
        rec("loads")
        assert data[:5] == b"PROBE", data[:20]
        return __import__("pickle").loads(data[5:])

if MODE == "priority":
    huey = PriorityRedisHuey(NAME, url=URL)
elif MODE == "serializer":
    huey = RedisHuey(NAME, url=URL, serializer=ProbeSerializer())
else:
    huey = RedisHuey(NAME, url=URL)
huey_b = RedisHuey(NAME + ".b", url=URL)

@huey.on_startup()
def _ready():
    rec("ready")

@huey.task()
def add(x, y):
    rec("add")
    return x + y

@huey.task()
def mul(x, y):
    return x * y

@huey.task()
def total(xs):
    return sum(xs)

@huey.task()
def mark(label):
    rec("mark", label=label)
    return label

@huey.task(retries=2, retry_delay=0)
def flaky(fails):
    n = count("flaky")
    rec("flaky", attempt=n)
    if n <= fails:
        raise RuntimeError("attempt %d" % n)
    return n

@huey.task(retries=1, retry_delay=0)
def always_fails():
    rec("fail")
    raise RuntimeError("always fails")

@huey.task()
@huey.rate_limit("rl", limit=2, per=1)
def limited(i):
    rec("limited", i=i)

@huey_b.task()
def on_b():
    rec("mark", label="b")

if MODE == "periodic":
    @huey.periodic_task(crontab(minute="*"))
    def tick():
        rec("mark", label="tick")
'''


def _setup(lab: Lab, mode: str = "") -> Any:
    import os

    os.environ["PROBE_MODE"] = mode
    lab.write("hueytasks.py", TASKS)
    import hueytasks  # type: ignore[import-not-found]

    return hueytasks


def _consumer(lab: Lab, instance: str = "hueytasks.huey", ready: bool = True, name: str = "consumer",
              workers: int = 1) -> Any:
    w = lab.worker([bin_path("huey_consumer"), instance, "-w", str(workers), "-k", "thread", "-s", "1", "-d", "0.05",
                    "-m", "0.5", "-q"], name)
    if ready and not lab.wait_events("ready", 1, 30):
        raise ProbeFailed("huey consumer not ready in 30 s: " + w.output())
    return w


def basic_queuing(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _consumer(lab, ready=False)
    v = t.add(2, 3).get(blocking=True, timeout=30)
    return lab.result("yes" if v == 5 else "no", "@huey.task(); add(2, 3).get(blocking=True); `huey_consumer m.huey`",
                      f"result {v!r} from consumer pid {[e['pid'] for e in lab.events('add')]}")


def retries(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _consumer(lab, ready=False)
    v = t.flaky(2).get(blocking=True, timeout=30)
    attempts = [e["attempt"] for e in lab.events("flaky")]
    ok = attempts == [1, 2, 3] and v == 3
    return lab.result("yes" if ok else "no", "@huey.task(retries=2, retry_delay=0)",
                      f"attempts {attempts}, final result {v!r}")


def scheduling_delay(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _consumer(lab)
    t0 = time.time()
    t.mark.schedule(args=("delayed",), delay=2)
    evs = lab.wait_events("mark", 1, 20)
    if not evs:
        raise ProbeFailed("scheduled task never ran")
    lag = evs[0]["t"] - t0
    ok = delay_honoured(lag)
    return lab.result("yes" if ok else "no", "task.schedule(args=..., delay=2); `huey_consumer -s 1`",
                      f"task ran {lag:.2f} s after schedule(delay=2)")


def scheduling_periodic(lab: Lab) -> ProbeResult:
    from datetime import datetime, timedelta

    t = _setup(lab, "periodic")
    _consumer(lab)
    evs = lab.wait_events("mark", 1, 15)
    nxt = t.huey.read_periodic(datetime.now() + timedelta(minutes=1))
    ok = len(evs) >= 1 and any(getattr(x, "name", "").endswith("tick") for x in nxt)
    return lab.result(
        "yes" if ok else "no", "@huey.periodic_task(crontab(minute='*')); `huey_consumer` (periodic on by default)",
        f"the consumer's scheduler enqueued the periodic task by itself ({len(evs)} run(s) within 15 s of start; "
        f"huey.read_periodic(now+1min) also returns it: {[getattr(x, 'name', x) for x in nxt]}); crontab resolution "
        "is one minute, so a second run was not waited for")


def priority(lab: Lab) -> ProbeResult:
    t = _setup(lab, "priority")
    for i in range(3):
        t.huey.enqueue(t.mark.s(f"low{i}", priority=1))
    for i in range(3):
        t.huey.enqueue(t.mark.s(f"high{i}", priority=9))
    _consumer(lab, ready=False)
    evs = lab.wait_events("mark", 6, 30)
    order = [e["label"] for e in evs]
    ok = order[:3] == ["high0", "high1", "high2"] and len(order) == 6
    return lab.result("yes" if ok else "no", "PriorityRedisHuey; huey.enqueue(mark.s(label, priority=1|9))",
                      f"3 priority-1 then 3 priority-9 tasks queued before the consumer started; order {order}")


def chaining(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _consumer(lab, ready=False)
    pipe = t.add.s(2, 3).then(t.mul, 10)
    rg = t.huey.enqueue(pipe)
    v = rg.get(blocking=True, timeout=30)
    return lab.result("yes" if v == [5, 50] else "no", "huey.enqueue(add.s(2, 3).then(mul, 10))",
                      f"pipeline results {v!r} (add's result 5 passed as mul's first argument)")


def groups(lab: Lab) -> ProbeResult:
    from huey import group

    t = _setup(lab)
    _consumer(lab, ready=False)
    v = t.add.map([(i, i) for i in range(4)]).get(blocking=True, timeout=30)
    c = t.huey.enqueue(group([t.add.s(1, 1), t.add.s(2, 2)]).then(t.total))
    cv = c.get(blocking=True, timeout=30)
    ok = v == [0, 2, 4, 6] and cv == 6
    return lab.result("yes" if ok else "no", "add.map([(i, i), ...]); huey.enqueue(huey.group([...]).then(total)) (chord)",
                      f"map results {v!r}; chord callback result {cv!r}")


def rate_limiting(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _consumer(lab, workers=2)
    for i in range(6):
        t.limited(i)
    evs = lab.wait_events("limited", 6, 40)
    ts = sorted(e["t"] for e in evs)
    if len(ts) < 6:
        raise ProbeFailed(f"only {len(ts)} of 6 rate-limited tasks ran: {lab.worker_logs()}")
    mx, counts, ok = window_counts(ts, 2)
    api = "@huey.task() @huey.rate_limit('rl', limit=2, per=1) (retry=True)"
    obs = (f"6 tasks, 2 consumer workers: executions per aligned 1-s window {counts} (max {mx}, limit 2), "
           f"span {ts[-1] - ts[0]:.2f} s")
    if ok:
        return lab.result("yes", api, obs)
    return lab.result("partial", api, obs + " - the limit was exceeded", missing="the fixed-window limiter let more "
                      "than `limit` executions through in one window with 2 concurrent workers in this run")


def dead_letter_queues(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _consumer(lab, ready=False)
    r = t.always_fails()
    lab.wait_events("fail", 2, 20)
    err = None

    def failed() -> bool:
        nonlocal err
        try:
            r.get(preserve=True)
        except Exception as exc:  # noqa: BLE001
            err = f"{type(exc).__name__}"
            return True
        return False
    wait_until(failed, 10)
    time.sleep(0.5)
    pending, scheduled = t.huey.pending_count(), t.huey.scheduled_count()
    return lab.result("no", "@huey.task(retries=1) always failing; huey.pending_count(), huey.scheduled_count(), "
                      "Result.get()",
                      f"after {len(lab.events('fail'))} attempts the task is gone: pending {pending}, scheduled "
                      f"{scheduled}; only its error is kept as the result ({err}); no failed-task queue or registry "
                      "exists (re-running needs the caller's Result handle: Result.reschedule())")


def result_storage(lab: Lab) -> ProbeResult:
    from huey import RedisHuey

    t = _setup(lab)
    _consumer(lab, ready=False)
    r = t.add(20, 22)
    r.get(blocking=True, timeout=30, preserve=True)
    v = RedisHuey(f"probe.{lab.token}", url=REDIS_URL).result(r.id)
    return lab.result("yes" if v == 42 else "no", "RedisHuey(name).result(task_id) from a fresh instance",
                      f"result read by id: {v!r}")


def task_routing(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _consumer(lab, ready=False)
    t.on_b()
    t.mark("a")
    lab.wait_events("mark", 1, 15)
    time.sleep(1.5)
    labels = [e["label"] for e in lab.events("mark")]
    b_pending = t.huey_b.pending_count()
    ok = labels == ["a"] and b_pending == 1
    return lab.result(
        "partial" if ok else "no", "two Huey instances (RedisHuey(name_a), RedisHuey(name_b)); `huey_consumer m.huey_a`",
        f"consumer of instance a ran {labels}; instance b still has {b_pending} pending task",
        missing="a Huey instance is a single queue: no per-task or per-call queue selection within one instance; "
                "routing means one Huey instance and one consumer per queue" if ok else None)


def custom_serializers(lab: Lab) -> ProbeResult:
    t = _setup(lab, "serializer")
    r = t.add(1, 2)
    data = t.huey.storage.enqueued_items()
    _consumer(lab, ready=False)
    v = r.get(blocking=True, timeout=30)
    loads = any(e["name"] == "loads" for e in lab.events())
    ok = bool(data) and data[0][:5] == b"PROBE" and v == 3 and loads
    return lab.result("yes" if ok else "no",
                      "Huey(serializer=ProbeSerializer()) (subclass of huey.serializer.Serializer)",
                      f"queued message starts {data[0][:12] if data else None!r}; consumer used the custom "
                      f"deserializer: {loads}; result {v!r}")


def monitoring_apis(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    r = t.add(1, 1)
    t.mark.schedule(args=("later",), delay=60)
    pend = [x.id for x in t.huey.pending()]
    ok = r.id in pend
    return lab.result("yes" if ok else "no",
                      "huey.pending(), pending_count(), scheduled(), scheduled_count(), result_count()",
                      f"with no consumer: pending() lists the task id: {r.id in pend}; pending_count "
                      f"{t.huey.pending_count()} (the immediate task and a schedule(delay=60) task, which the consumer would "
                      f"move to the schedule); scheduled_count {t.huey.scheduled_count()}")


MIN = '''
from huey import RedisHuey
huey = RedisHuey("{name}", url="{url}")
@huey.task()
def add(x, y):
    return x + y
'''


def _minimal(lab: Lab) -> tuple[bool, str, list[Any]]:
    tasks = lab.write("mintasks.py", MIN.format(url=REDIS_URL, name=f"probe.{lab.token}.min"), preamble=False)
    prod = lab.write("minprod.py", "from mintasks import add\nprint(add(2, 3).get(blocking=True, timeout=30))\n",
                     preamble=False)
    lab.worker([bin_path("huey_consumer"), "mintasks.huey"])
    out = subprocess.run(check=False, args=[sys.executable, str(prod)], cwd=lab.tmp, env=lab.env(), capture_output=True, text=True,
                         timeout=40)
    return out.stdout.strip() == "5", f"producer printed {out.stdout.strip()!r}", [tasks, prod]


def setup_simplicity(lab: Lab) -> ProbeResult:
    ok, detail, files = _minimal(lab)
    return setup_probe(lab, files, ["huey_consumer"], ["huey", "redis"], ["name", "redis URL"], ok, detail)


def configuration(lab: Lab) -> ProbeResult:
    import inspect

    from huey import Huey
    from huey.storage import RedisStorage

    from .rq import _cli_options, config_verdict

    ok, detail, _ = _minimal(lab)
    n_cli = _cli_options([bin_path("huey_consumer"), "--help"], lab)
    n_init = len(inspect.signature(Huey.__init__).parameters) - 2  # self, **storage_kwargs
    n_store = len(inspect.signature(RedisStorage.__init__).parameters) - 2
    return config_verdict(lab, ok, detail, ["name", "redis URL"],
                          {"huey_consumer --help options": n_cli, "Huey() parameters": n_init,
                           "RedisStorage parameters": n_store})


def debugging_tools(lab: Lab) -> ProbeResult:
    from huey import Huey, MemoryHuey

    help_text = subprocess.run(check=False, args=[bin_path("huey_consumer"), "--help"], capture_output=True, text=True,
                               timeout=30).stdout
    h = MemoryHuey("dbg", immediate=True)

    @h.task()
    def add(x: int, y: int) -> int:
        return x + y

    v = add(4, 5).get()
    scripts = [p.name for p in __import__("pathlib").Path(sys.executable).parent.iterdir() if "huey" in p.name]
    obs = (f"installed huey commands: {scripts} (the consumer only; no inspect/status command, --help has "
           f"{'--verbose' if '--verbose' in help_text else 'no --verbose'}); Huey(immediate=True) ran the task "
           f"in-process: {v!r}")
    api = "Huey(immediate=True); huey_consumer --help"
    del Huey
    if v == 9:
        return lab.result("partial", api, obs, missing="no CLI/tool that inspects a live consumer or queue "
                          "(the Python API huey.pending()/scheduled() exists, see monitoring_apis)")
    return lab.result("no", api, obs)


def documentation(lab: Lab) -> ProbeResult:
    return documentation_probe(lab, "huey", "huey")


def type_safety(lab: Lab) -> ProbeResult:
    header = '''
from huey import RedisHuey
huey = RedisHuey("m")
@huey.task()
def add(x: int, y: int) -> int:
    return x + y
'''
    good, flagged, out = mypy_check(lab, "add(1, 2)\n", 'add("one", 2)\n', header, "huey")
    api = "mypy on `add('one', 2)` (the enqueue call) where @huey.task() def add(x: int, y: int)"
    if good and flagged:
        return lab.result("yes", api, out)
    return lab.result("no", api, f"wrong argument type not flagged ({out})" if good else out)


def async_support(lab: Lab) -> ProbeResult:
    import asyncio

    from huey import MemoryHuey

    h = MemoryHuey("a", immediate=True)
    err = None
    try:
        @h.task()
        async def aadd(x: int, y: int) -> int:
            return x + y
    except Exception as exc:  # noqa: BLE001
        err = f"{type(exc).__name__}: {exc}"
    from huey.contrib.asyncio import aget_result

    @h.task()
    def add(x: int, y: int) -> int:
        return x + y

    v = asyncio.run(aget_result(add(2, 3)))
    obs = f"@huey.task() on `async def` raised {err!r}; huey.contrib.asyncio.aget_result awaited a result: {v!r}"
    api = "@huey.task() async def; huey.contrib.asyncio.aget_result(result)"
    if err and v == 5:
        return lab.result("partial", api, obs, missing="`async def` tasks are rejected; only awaiting results from "
                          "async code (huey.contrib.asyncio) is supported")
    return lab.result("yes" if not err else "no", api, obs)


def claim_backends(lab: Lab) -> ProbeResult:
    import huey
    import huey.storage as st
    from huey import FileHuey, MemoryHuey, RedisHuey, SqliteHuey

    worked = {}
    cands = {"sqlite": lambda: SqliteHuey("c", filename=str(lab.tmp / "h.db")),
             "file": lambda: FileHuey("c", path=str(lab.tmp / "hfile")),
             "redis": lambda: RedisHuey(f"probe.{lab.token}.c", url=REDIS_URL),
             "memory": lambda: MemoryHuey("c")}
    for name, make in cands.items():
        try:
            h = make()

            @h.task()
            def add(x: int, y: int) -> int:
                return x + y
            add(1, 2)
            task = h.dequeue()
            worked[name] = h.execute(task) == 3
        except Exception as exc:  # noqa: BLE001
            worked[name] = f"{type(exc).__name__}: {exc}"
    storages = sorted(n for n, c in vars(st).items() if isinstance(c, type) and issubclass(c, st.BaseStorage)
                      and c is not st.BaseStorage)
    hueys = sorted(n for n in dir(huey) if n.endswith("Huey"))
    holds = all(worked.get(k) is True for k in ("sqlite", "file", "redis"))
    return lab.result("yes", "SqliteHuey / FileHuey / RedisHuey / MemoryHuey: enqueue, dequeue, execute; "
                      "subclasses of huey.storage.BaseStorage",
                      f"enqueue+dequeue+execute per backend: {worked}; storage classes shipped: {storages}; Huey "
                      f"classes: {hueys} (Postgres/CySqlite not exercised: no server / module). The claim's three "
                      "backends work, but the list is incomplete (memory, Postgres, CySqlite, plus contrib "
                      "sql_huey/valkey)", holds=holds)


PROBES = {name: globals()[name] for name in (
    "basic_queuing", "retries", "scheduling_delay", "scheduling_periodic", "priority", "chaining", "groups",
    "rate_limiting", "dead_letter_queues", "result_storage", "task_routing", "custom_serializers", "monitoring_apis",
    "setup_simplicity", "configuration", "debugging_tools", "documentation", "type_safety", "async_support",
    "claim_backends")}
