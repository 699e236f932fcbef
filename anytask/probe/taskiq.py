"""TaskiQ probes: TaskiQ's own API (broker.task, kiq, schedulers, middlewares) with taskiq-redis and
taskiq-aio-pika brokers, and its `taskiq worker` / `taskiq scheduler` CLI."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any

from .common import (
    AMQP_URL_NOSLASH,
    REDIS_URL,
    Lab,
    ProbeFailed,
    bin_path,
    delay_honoured,
    documentation_probe,
    grep_package,
    mypy_check,
    n_params,
    rabbit_count,
    setup_probe,
    version_of,
    wait_until,
)
from .result import ProbeResult


def VERSION() -> str:
    return version_of("taskiq", "taskiq-redis", "taskiq-aio-pika")


TASKS = '''
import asyncio, os, time
from taskiq import TaskiqEvents, TaskiqScheduler, SimpleRetryMiddleware
from taskiq.schedule_sources import LabelScheduleSource
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend, ListRedisScheduleSource

Q = os.environ["PROBE_QUEUE"]
NS = "probe." + os.environ["PROBE_TOKEN"]
MODE = os.environ.get("PROBE_MODE", "")
REDIS = os.environ["PROBE_REDIS_URL"]

if MODE in ("priority", "dlq", "routing"):
    from taskiq_aio_pika import AioPikaBroker, Exchange, Queue, QueueType
    only = os.environ.get("PROBE_ONLY_QUEUE")
    names = [Q + ".a", Q + ".b"] if MODE == "routing" else [Q]
    if only:
        names = [only]
    broker = AioPikaBroker(
        url=os.environ["PROBE_AMQP_URL_NOSLASH"], qos=1,
        exchange=Exchange(name=Q, type="direct" if MODE == "routing" else "topic"),
        task_queues=[Queue(name=n, type=QueueType.CLASSIC, max_priority=10 if MODE == "priority" else None)
                     for n in names],
        dead_letter_queue=Queue(name=Q + ".dead", type=QueueType.CLASSIC))
else:
    # socket_timeout=None: redis-py 8 defaults to a 5 s socket timeout; ListQueueBroker's BRPOP without a timeout
    # then raises TimeoutError and the idle worker process dies every 5 s and is restarted (taskiq-redis 1.2.4).
    broker = ListQueueBroker(url=REDIS, queue_name=Q, socket_timeout=None)
broker = broker.with_result_backend(RedisAsyncResultBackend(redis_url=REDIS, prefix_str=NS))
broker.add_middlewares(SimpleRetryMiddleware(default_retry_count=3))
if MODE == "serializer":
    from taskiq.abc.serializer import TaskiqSerializer
    import json as _j
    class ProbeSerializer(TaskiqSerializer):
        def dumpb(self, value):
            return b"PROBE" + _j.dumps(value).encode()
        def loadb(self, value):
            rec("loads")
            assert value[:5] == b"PROBE", value[:20]
            return _j.loads(value[5:])
    broker = broker.with_serializer(ProbeSerializer())

source = ListRedisScheduleSource(REDIS, prefix=NS + ".sched", socket_timeout=None)
scheduler = TaskiqScheduler(broker, sources=[source, LabelScheduleSource(broker)])

@broker.on_event(TaskiqEvents.WORKER_STARTUP)
async def _ready(state):
    rec("ready")

@broker.task
async def add(x: int, y: int) -> int:
    rec("add")
    return x + y

@broker.task
async def mark(label: str) -> str:
    rec("mark", label=label)
    return label

@broker.task(retry_on_error=True, max_retries=3)
async def flaky(fails: int) -> int:
    n = count("flaky")
    rec("flaky", attempt=n)
    if n <= fails:
        raise RuntimeError("attempt %d" % n)
    return n

@broker.task(retry_on_error=True, max_retries=2)
async def always_fails() -> None:
    rec("fail")
    raise RuntimeError("always fails")

@broker.task
async def asleep(i: int) -> int:
    rec("astart", i=i)
    await asyncio.sleep(0.6)
    rec("aend", i=i)
    return i

if MODE == "periodic":
    @broker.task(schedule=[{"interval": 1, "args": ["tick"]}])
    async def tick(label: str) -> None:
        rec("mark", label=label)
'''


def _setup(lab: Lab, mode: str = "") -> Any:
    import os

    os.environ["PROBE_MODE"] = mode
    os.environ["PROBE_AMQP_URL_NOSLASH"] = AMQP_URL_NOSLASH
    if mode in ("priority", "dlq", "routing"):
        for suffix in ("", ".a", ".b", ".dead"):
            lab.rabbit_queue(lab.queue + suffix)
    lab.write("tqtasks.py", TASKS)
    import tqtasks  # type: ignore[import-not-found]

    return tqtasks


def _worker(lab: Lab, ready: bool = True, name: str = "worker", only_queue: str | None = None) -> Any:
    import os

    if only_queue:
        os.environ["PROBE_ONLY_QUEUE"] = only_queue
    try:
        w = lab.worker([bin_path("taskiq"), "worker", "tqtasks:broker", "--workers", "1", "--log-level", "WARNING",
                        "--no-configure-logging"], name)
    finally:
        os.environ.pop("PROBE_ONLY_QUEUE", None)
    if ready and not lab.wait_events("ready", 1, 30):
        raise ProbeFailed("taskiq worker not ready in 30 s: " + w.output())
    return w


def _run(t: Any, body: Callable[[], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        await t.broker.startup()
        try:
            return await body()
        finally:
            await t.broker.shutdown()
    return asyncio.run(go())


def basic_queuing(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _worker(lab, ready=False)

    async def body() -> Any:
        task = await t.add.kiq(2, 3)
        return (await task.wait_result(timeout=30)).return_value
    v = _run(t, body)
    return lab.result("yes" if v == 5 else "no",
                      "taskiq_redis.ListQueueBroker; @broker.task; await add.kiq(2, 3); `taskiq worker m:broker`",
                      f"result {v!r} from worker pid {[e['pid'] for e in lab.events('add')]}")


def retries(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _worker(lab, ready=False)

    async def body() -> Any:
        task = await t.flaky.kiq(2)
        await asyncio.sleep(0)
        return task
    _run(t, body)
    evs = lab.wait_events("flaky", 3, 20)
    attempts = [e["attempt"] for e in evs]
    ok = attempts == [1, 2, 3]
    return lab.result("yes" if ok else "no",
                      "broker.add_middlewares(taskiq.SimpleRetryMiddleware()); @broker.task(retry_on_error=True, "
                      "max_retries=3)", f"attempts {attempts} (the 3rd succeeded)")


def scheduling_delay(lab: Lab) -> ProbeResult:
    from datetime import datetime, timedelta

    t = _setup(lab)
    _worker(lab)
    lab.worker([bin_path("taskiq"), "scheduler", "tqtasks:scheduler", "--log-level", "WARNING", "--update-interval",
                "1"], "scheduler")
    time.sleep(1.0)
    t0 = time.time()

    async def body() -> Any:
        return await t.mark.schedule_by_time(t.source, datetime.now(UTC) + timedelta(seconds=2), "delayed")
    _run(t, body)
    evs = lab.wait_events("mark", 1, 20)
    if not evs:
        raise ProbeFailed("scheduled task never ran: " + lab.worker_logs())
    lag = evs[0]["t"] - t0
    ok = delay_honoured(lag)
    return lab.result("yes" if ok else "no",
                      "await task.schedule_by_time(ListRedisScheduleSource, now+2s, ...); `taskiq scheduler m:scheduler "
                      "--update-interval 1` + worker", f"task ran {lag:.2f} s after schedule_by_time(now + 2 s); needs the scheduler "
                      "process (which re-reads sources once a minute unless --update-interval is given) and a schedule source (ListRedisScheduleSource from taskiq-redis); the plain `delay` "
                      "label only works on taskiq-aio-pika with a delay queue")


def scheduling_periodic(lab: Lab) -> ProbeResult:
    _setup(lab, "periodic")
    _worker(lab)
    lab.worker([bin_path("taskiq"), "scheduler", "tqtasks:scheduler", "--log-level", "WARNING"], "scheduler")
    evs = lab.wait_events("mark", 3, 30)
    times = [round(e["t"] - evs[0]["t"], 2) for e in evs]
    ok = len(evs) >= 3
    return lab.result("yes" if ok else "no",
                      "@broker.task(schedule=[{'interval': 1, 'args': [...]}]); TaskiqScheduler(broker, "
                      "[LabelScheduleSource(broker)]); `taskiq scheduler m:scheduler` + worker",
                      f"{len(evs)} periodic runs at +{times} s" + ("" if ok else "; " + lab.worker_logs()))


def priority(lab: Lab) -> ProbeResult:
    t = _setup(lab, "priority")

    async def body() -> None:
        for i in range(3):
            await t.mark.kicker().with_labels(priority=1).kiq(f"low{i}")
        for i in range(3):
            await t.mark.kicker().with_labels(priority=9).kiq(f"high{i}")
    _run(t, body)
    _worker(lab, ready=False)
    evs = lab.wait_events("mark", 6, 30)
    order = [e["label"] for e in evs]
    ok = order[:3] == ["high0", "high1", "high2"] and len(order) == 6
    return lab.result("yes" if ok else "no",
                      "taskiq_aio_pika.AioPikaBroker(task_queues=[Queue(max_priority=10)], qos=1); "
                      "task.kicker().with_labels(priority=1|9).kiq()",
                      f"3 priority-1 then 3 priority-9 tasks queued before the worker started; order {order} "
                      "(RabbitMQ broker; the Redis brokers have no priority)")


def chaining(lab: Lab) -> ProbeResult:
    hits = grep_package("taskiq", r"def (then|chain|pipe|call_next)\b|class (Pipeline|Chain)\b")
    return lab.result(
        "plugin", "static check: regex for then/chain/pipe/call_next/Pipeline definitions over the installed taskiq",
        f"no chaining API in taskiq ({hits[:5] or 'no matches'}); chaining is the separate package taskiq-pipelines "
        "(PyPI: 'Taskiq pipelines for task chaining', Pipeline(...).call_next(...) with PipelineMiddleware); "
        "not installed or exercised here", plugin="taskiq-pipelines")


def groups(lab: Lab) -> ProbeResult:
    hits = grep_package("taskiq", r"def (group|chord|gather_tasks|map)\b|class (Group|Chord)\b")
    return lab.result(
        "plugin", "static check: regex for group/chord/map definitions over the installed taskiq",
        f"no group/chord primitive in taskiq ({hits[:5] or 'no matches'}); a caller can only asyncio.gather several "
        "kiq() handles itself. taskiq-pipelines offers map/group steps according to the taskiq-flow project page "
        "(not installed or exercised here)", plugin="taskiq-pipelines")


def rate_limiting(lab: Lab) -> ProbeResult:
    hits = grep_package("taskiq", r"rate.?limit|throttl")
    hits += grep_package("taskiq_redis", r"rate.?limit|throttl")
    return lab.result(
        "plugin", "static check: regex 'rate.?limit|throttl' over the installed taskiq and taskiq-redis sources",
        f"no rate limiter in taskiq/taskiq-redis ({hits[:5] or 'no matches'}); `taskiq worker --max-async-tasks` "
        "caps concurrency, not rate. The package index lists taskiq-rate-limiter ('rate limiter middleware for "
        "Taskiq'); not installed or exercised here", plugin="taskiq-rate-limiter")


def dead_letter_queues(lab: Lab) -> ProbeResult:
    t = _setup(lab, "dlq")
    _worker(lab, ready=False)

    async def body() -> None:
        await t.always_fails.kiq()
    _run(t, body)
    evs = lab.wait_events("fail", 2, 25)
    time.sleep(1.5)
    dead = rabbit_count(lab.queue + ".dead")
    main = rabbit_count(lab.queue)
    ok = bool(dead)
    return lab.result(
        "yes" if ok else "no",
        "taskiq_aio_pika.AioPikaBroker(dead_letter_queue=Queue(...)) (main queue declared with x-dead-letter-*); "
        "@broker.task(retry_on_error=True, max_retries=2) always failing",
        f"after {len(evs)} attempts (retries exhausted) the dead-letter queue holds {dead} message(s), main queue "
        f"{main}: taskiq acks failed messages, so the declared dead-letter queue only receives messages RabbitMQ "
        "itself rejects/expires; the Redis brokers have none" if not ok else
        f"after {len(evs)} attempts the dead-letter queue holds {dead} message(s)")


def result_storage(lab: Lab) -> ProbeResult:
    from taskiq_redis import RedisAsyncResultBackend

    t = _setup(lab)
    _worker(lab, ready=False)

    async def body() -> Any:
        task = await t.add.kiq(20, 22)
        await task.wait_result(timeout=30)
        backend = RedisAsyncResultBackend(redis_url=REDIS_URL, prefix_str=f"probe.{lab.token}")
        try:
            return (await backend.get_result(task.task_id)).return_value
        finally:
            await backend.shutdown()
    v = _run(t, body)
    return lab.result("yes" if v == 42 else "no",
                      "broker.with_result_backend(taskiq_redis.RedisAsyncResultBackend(...)); "
                      "fresh backend.get_result(task_id)",
                      f"result read by id through a fresh backend: {v!r} (taskiq core ships only in-memory/dummy "
                      "backends; the Redis backend comes from taskiq-redis, which a Redis deployment needs anyway)")


def task_routing(lab: Lab) -> ProbeResult:
    t = _setup(lab, "routing")
    _worker(lab, only_queue=lab.queue + ".a")

    async def body() -> None:
        await t.mark.kicker().with_labels(queue_name=lab.queue + ".a").kiq("a")
        await t.mark.kicker().with_labels(queue_name=lab.queue + ".b").kiq("b")
    _run(t, body)
    lab.wait_events("mark", 1, 15)
    time.sleep(1.5)
    labels = [e["label"] for e in lab.events("mark")]
    b_left = rabbit_count(lab.queue + ".b")
    ok = labels == ["a"] and b_left == 1
    return lab.result(
        "yes" if ok else "no",
        "AioPikaBroker(exchange=Exchange(type='direct'), task_queues=[Queue(Q.a), Queue(Q.b)]); "
        "kicker().with_labels(queue_name=Q.a|Q.b); worker whose broker consumes Q.a only",
        f"worker on Q.a ran {labels}; Q.b still holds {b_left} message (routing via taskiq-aio-pika; a taskiq-redis "
        "broker instance is one queue)")


def custom_serializers(lab: Lab) -> ProbeResult:
    t = _setup(lab, "serializer")

    async def body() -> Any:
        return await t.add.kiq(1, 2)
    task = _run(t, body)
    raw = lab.redis.lrange(lab.queue, 0, -1)
    _worker(lab, ready=False)

    async def wait() -> Any:
        return (await task.wait_result(timeout=30)).return_value
    v = _run(t, wait)
    loads = any(e["name"] == "loads" for e in lab.events())
    ok = bool(raw) and raw[0][:5] == b"PROBE" and v == 3 and loads
    return lab.result("yes" if ok else "no",
                      "broker.with_serializer(ProbeSerializer()) (subclass of taskiq.abc.serializer.TaskiqSerializer)",
                      f"queued message starts {raw[0][:12] if raw else None!r}; worker used the custom loadb: {loads}; "
                      f"result {v!r}")


def monitoring_apis(lab: Lab) -> ProbeResult:
    t = _setup(lab)

    async def body() -> Any:
        return await t.add.kiq(1, 1)
    task = _run(t, body)
    n = lab.redis.llen(lab.queue)
    public = sorted(n for n in dir(t.broker) if not n.startswith("_") and any(
        k in n for k in ("list", "pending", "inspect", "queue", "stat", "count")))
    mws = sorted(n for n in dir(__import__("taskiq.middlewares", fromlist=["x"])) if n.endswith("Middleware"))
    return lab.result(
        "plugin", "broker / result-backend public API searched for list/pending/inspect/stat/count methods; "
                  "taskiq.middlewares",
        f"a task was queued (Redis list length {n}, task id {task.task_id[:8]}...) but no taskiq API lists queued "
        f"tasks or workers (matching broker attributes: {public or 'none'}); core middlewares {mws}: "
        "PrometheusMiddleware needs prometheus-client, TaskiqAdminMiddleware posts to an external taskiq-admin "
        "server; the package index lists taskiq-dashboard for monitoring (not installed or exercised)",
        plugin="taskiq-dashboard (or prometheus-client for PrometheusMiddleware)")


MIN = '''
from taskiq_redis import ListQueueBroker
broker = ListQueueBroker(url="{url}", queue_name="{q}", socket_timeout=None)
@broker.task
async def add(x: int, y: int) -> None:
    print(x + y, flush=True)
'''


def _minimal(lab: Lab) -> tuple[bool, str, list[Any]]:
    tasks = lab.write("mintasks.py", MIN.format(url=REDIS_URL, q=lab.queue + ".min"), preamble=False)
    prod = lab.write("minprod.py", '''
import asyncio
from mintasks import add, broker
async def main():
    await broker.startup()
    await add.kiq(2, 3)
    await broker.shutdown()
asyncio.run(main())
''', preamble=False)
    w = lab.worker([bin_path("taskiq"), "worker", "mintasks:broker", "--workers", "1"])
    subprocess.run(check=False, args=[sys.executable, str(prod)], cwd=lab.tmp, env=lab.env(), capture_output=True, text=True, timeout=30)
    ok = bool(wait_until(lambda: "5" in w.output().split(), 20))
    return ok, f"worker printed 5: {ok}", [tasks, prod]


def setup_simplicity(lab: Lab) -> ProbeResult:
    ok, detail, files = _minimal(lab)
    return setup_probe(lab, files, ["taskiq worker"], ["taskiq", "taskiq-redis"], ["redis URL", "queue name"], ok,
                       detail)


def configuration(lab: Lab) -> ProbeResult:
    from taskiq_redis import ListQueueBroker

    from .rq import _cli_options, config_verdict

    ok, detail, _ = _minimal(lab)
    n_cli = _cli_options([bin_path("taskiq"), "worker", "--help"], lab)
    n_sched = _cli_options([bin_path("taskiq"), "scheduler", "--help"], lab)
    return config_verdict(lab, ok, detail, ["redis URL", "queue name"],
                          {"taskiq worker --help options": n_cli, "taskiq scheduler --help options": n_sched,
                           "ListQueueBroker() parameters": n_params(ListQueueBroker.__init__)})


def debugging_tools(lab: Lab) -> ProbeResult:
    from taskiq import InMemoryBroker

    help_text = subprocess.run(check=False, args=[bin_path("taskiq"), "--help"], capture_output=True, text=True, timeout=30).stdout
    broker = InMemoryBroker()

    @broker.task
    async def add(x: int, y: int) -> int:
        return x + y

    async def go() -> Any:
        await broker.startup()
        task = await add.kiq(4, 5)
        v = (await task.wait_result(timeout=5)).return_value
        await broker.shutdown()
        return v
    v = asyncio.run(go())
    subs = [c for c in ("inspect", "status", "info", "monitor") if c in help_text]
    obs = (f"`taskiq --help` subcommands: worker, scheduler (inspection commands found: {subs or 'none'}); "
           f"InMemoryBroker ran the task in-process: {v!r}")
    api = "taskiq.InMemoryBroker in-process; `taskiq --help`"
    if v == 9 and not subs:
        return lab.result("partial", api, obs, missing="no CLI/tool that inspects a live worker or queue")
    return lab.result("yes" if v == 9 else "no", api, obs)


def documentation(lab: Lab) -> ProbeResult:
    return documentation_probe(lab, "taskiq", "taskiq")


def type_safety(lab: Lab) -> ProbeResult:
    header = '''
import asyncio
from taskiq_redis import ListQueueBroker
broker = ListQueueBroker(url="redis://localhost")
@broker.task
async def add(x: int, y: int) -> int:
    return x + y
async def main() -> None:
'''
    good, flagged, out = mypy_check(lab, "    await add.kiq(1, 2)\n", '    await add.kiq("one", 2)\n', header, "taskiq")
    api = "mypy on `await add.kiq('one', 2)` where @broker.task async def add(x: int, y: int)"
    if good and flagged:
        return lab.result("yes", api, out)
    return lab.result("no", api, f"wrong argument type not flagged ({out})" if good else out)


def async_support(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _worker(lab)

    async def body() -> Any:
        tasks = [await t.asleep.kiq(i) for i in range(3)]
        return [(await x.wait_result(timeout=30)).return_value for x in tasks]
    vals = _run(t, body)
    starts = sorted(e["t"] for e in lab.events("astart"))
    ends = sorted(e["t"] for e in lab.events("aend"))
    pids = {e["pid"] for e in lab.events("astart")}
    overlapped = len(starts) == 3 and starts[-1] < ends[0] and len(pids) == 1
    obs = (f"3 `async def` tasks (0.6 s sleep) on one worker process returned {vals}; "
           f"{'interleaved on one event loop' if overlapped else 'did not interleave'} (span "
           f"{ends[-1] - starts[0]:.2f} s); producer API is async (await kiq / wait_result)")
    api = "@broker.task async def; `taskiq worker --workers 1`; await task.kiq()"
    if vals == [0, 1, 2] and overlapped:
        return lab.result("yes", api, obs)
    if vals == [0, 1, 2]:
        return lab.result("partial", api, obs, missing="async tasks did not interleave")
    return lab.result("no", api, obs)


PROBES = {name: globals()[name] for name in (
    "basic_queuing", "retries", "scheduling_delay", "scheduling_periodic", "priority", "chaining", "groups",
    "rate_limiting", "dead_letter_queues", "result_storage", "task_routing", "custom_serializers", "monitoring_apis",
    "setup_simplicity", "configuration", "debugging_tools", "documentation", "type_safety", "async_support")}
