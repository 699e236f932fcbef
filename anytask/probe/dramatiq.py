"""Dramatiq probes: Dramatiq's own API (actors, composition, rate_limits, results, brokers) and its `dramatiq` CLI."""

from __future__ import annotations

import subprocess
import sys
import time
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
    setup_probe,
    version_of,
    wait_until,
    window_counts,
)
from .result import ProbeResult


def VERSION() -> str:
    return version_of("dramatiq")


TASKS = '''
import asyncio, os, time
import dramatiq
from dramatiq.middleware import Middleware
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend
from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend as RLBackend

Q = os.environ["PROBE_QUEUE"]
NS = "probe." + os.environ["PROBE_TOKEN"]
MODE = os.environ.get("PROBE_MODE", "")

if MODE in ("priority", "dlq", "monitor"):
    from dramatiq.brokers.rabbitmq import RabbitmqBroker
    broker = RabbitmqBroker(url=os.environ["PROBE_AMQP_URL_NOSLASH"], max_priority=10 if MODE == "priority" else None)
else:
    from dramatiq.brokers.redis import RedisBroker
    broker = RedisBroker(url=os.environ["PROBE_REDIS_URL"], namespace=NS)
broker.add_middleware(Results(backend=RedisBackend(url=os.environ["PROBE_REDIS_URL"], namespace=NS + ".results")))
if MODE == "async":
    from dramatiq.middleware.asyncio import AsyncIO
    broker.add_middleware(AsyncIO())
if MODE == "encoder":
    import json as _j
    from dramatiq.encoder import Encoder
    class ProbeEncoder(Encoder):
        def encode(self, data):
            return b"PROBE" + _j.dumps(data).encode()
        def decode(self, data):
            rec("decode")
            assert data[:5] == b"PROBE", data[:20]
            return _j.loads(data[5:])
    dramatiq.set_encoder(ProbeEncoder())

class Ready(Middleware):
    def after_worker_boot(self, broker, worker):
        rec("ready")
broker.add_middleware(Ready())
dramatiq.set_broker(broker)
LIMITER = WindowRateLimiter(RLBackend(url=os.environ["PROBE_REDIS_URL"]), NS + ".rl", limit=2, window=1)

@dramatiq.actor(queue_name=Q, store_results=True)
def add(x, y):
    rec("add")
    return x + y

@dramatiq.actor(queue_name=Q, store_results=True)
def mul(x, y):
    return x * y

@dramatiq.actor(queue_name=Q, store_results=True)
def mark(label):
    rec("mark", label=label)
    return label

@dramatiq.actor(queue_name=Q, max_retries=2, min_backoff=10, max_backoff=50, store_results=True)
def flaky(fails):
    n = count("flaky")
    rec("flaky", attempt=n)
    if n <= fails:
        raise RuntimeError("attempt %d" % n)
    return n

@dramatiq.actor(queue_name=Q, max_retries=0)
def always_fails():
    rec("fail")
    raise RuntimeError("always fails")

@dramatiq.actor(queue_name=Q, max_retries=100, min_backoff=100, max_backoff=200)
def limited(i):
    with LIMITER.acquire():
        rec("limited", i=i)

@dramatiq.actor(queue_name=Q + ".a")
def on_a():
    rec("mark", label="a")

@dramatiq.actor(queue_name=Q + ".b")
def on_b():
    rec("mark", label="b")

if MODE == "async":
    @dramatiq.actor(queue_name=Q, store_results=True)
    async def asleep(i):
        rec("astart", i=i)
        await asyncio.sleep(0.6)
        rec("aend", i=i)
        return i
'''


def _setup(lab: Lab, mode: str = "") -> Any:
    import os

    os.environ["PROBE_MODE"] = mode
    os.environ["PROBE_AMQP_URL_NOSLASH"] = AMQP_URL_NOSLASH
    if mode in ("priority", "dlq", "monitor"):
        for suffix in ("", ".DQ", ".XQ", ".a", ".a.DQ", ".a.XQ", ".b", ".b.DQ", ".b.XQ"):
            lab.rabbit_queue(lab.queue + suffix)
    lab.write("dramtasks.py", TASKS)
    import dramtasks  # type: ignore[import-not-found]

    return dramtasks


def _worker(lab: Lab, queues: tuple[str, ...] = (), threads: int = 2, ready: bool = True, name: str = "worker") -> Any:

    argv = [bin_path("dramatiq"), "dramtasks", "-p", "1", "-t", str(threads)]
    if queues:
        argv += ["-Q", *queues]
    w = lab.worker(argv, name)
    if ready and not lab.wait_events("ready", 1, 30):
        raise ProbeFailed("dramatiq worker not ready in 30 s: " + w.output())
    return w


def basic_queuing(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _worker(lab, ready=False)
    m = t.add.send(2, 3)
    v = m.get_result(block=True, timeout=30_000)
    return lab.result("yes" if v == 5 else "no", "@dramatiq.actor; add.send(2, 3); `dramatiq module`",
                      f"actor ran in worker pid {[e['pid'] for e in lab.events('add')]}, result {v!r}")


def retries(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _worker(lab, ready=False)
    v = t.flaky.send(2).get_result(block=True, timeout=30_000)
    attempts = [e["attempt"] for e in lab.events("flaky")]
    ok = attempts == [1, 2, 3] and v == 3
    return lab.result("yes" if ok else "no", "@dramatiq.actor(max_retries=2, min_backoff=10, max_backoff=50) "
                      "(Retries middleware, on by default)", f"attempts {attempts}, final result {v!r}")


def scheduling_delay(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _worker(lab)
    t0 = time.time()
    t.mark.send_with_options(args=("delayed",), delay=2000)
    evs = lab.wait_events("mark", 1, 25)
    if not evs:
        raise ProbeFailed("delayed message never ran")
    lag = evs[0]["t"] - t0
    ok = delay_honoured(lag)
    return lab.result("yes" if ok else "no", "actor.send_with_options(args=..., delay=2000)",
                      f"message ran {lag:.2f} s after send_with_options(delay=2000 ms)")


def scheduling_periodic(lab: Lab) -> ProbeResult:
    hits = grep_package("dramatiq", r"cron|periodic|schedule_interval|every\(")
    return lab.result(
        "plugin", "static check: regex 'cron|periodic|schedule_interval|every(' over the installed dramatiq source",
        f"no periodic-scheduling API in dramatiq (matches: {hits[:5] or 'none'}); only one-off delays "
        "(send_with_options(delay=...)). Periodic runs need a separate scheduler package: the package index lists "
        "'periodiq' (\"Simple Scheduler for Dramatiq Task Queue\") and 'dramatiq-crontab' (Django); not installed or "
        "exercised here", plugin="periodiq (or dramatiq-crontab / APScheduler)")


def priority(lab: Lab) -> ProbeResult:
    t = _setup(lab, "priority")
    for i in range(3):
        t.mark.send_with_options(args=(f"low{i}",), broker_priority=1)
    for i in range(3):
        t.mark.send_with_options(args=(f"high{i}",), broker_priority=9)
    _worker(lab, threads=1, ready=False)
    evs = lab.wait_events("mark", 6, 30)
    order = [e["label"] for e in evs]
    ok = order[:3] == ["high0", "high1", "high2"] and len(order) == 6
    return lab.result("yes" if ok else "no", "RabbitmqBroker(max_priority=10); send_with_options(broker_priority=1|9)",
                      f"3 priority-1 then 3 priority-9 messages queued before the worker started; order {order} "
                      "(broker priority on RabbitMQ; the actor `priority` option only orders a worker's prefetched "
                      "messages)")


def chaining(lab: Lab) -> ProbeResult:
    from dramatiq import pipeline

    t = _setup(lab)
    _worker(lab, ready=False)
    pipe = pipeline([t.add.message(2, 3), t.mul.message(10)]).run()
    v = pipe.get_result(block=True, timeout=30_000)
    return lab.result("yes" if v == 50 else "no", "dramatiq.pipeline([add.message(2, 3), mul.message(10)]).run()",
                      f"pipeline result {v!r} (add's result piped into mul(10, 5))")


def groups(lab: Lab) -> ProbeResult:
    from dramatiq import group

    t = _setup(lab)
    _worker(lab, ready=False)
    g = group([t.add.message(i, i) for i in range(4)]).run()
    v = list(g.get_results(block=True, timeout=30_000))
    ok = v == [0, 2, 4, 6]
    return lab.result("yes" if ok else "no", "dramatiq.group([add.message(i, i) ...]).run().get_results(block=True)",
                      f"group results {v!r} (completion callbacks need the GroupCallbacks middleware, not exercised)")


def rate_limiting(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _worker(lab, threads=2)
    for i in range(6):
        t.limited.send(i)
    evs = lab.wait_events("limited", 6, 40)
    ts = sorted(e["t"] for e in evs)
    if len(ts) < 6:
        raise ProbeFailed(f"only {len(ts)} of 6 limited messages ran")
    mx, counts, ok = window_counts(ts, 2)
    api = ("dramatiq.rate_limits.WindowRateLimiter(RedisBackend(), key, limit=2, window=1); "
           "`with limiter.acquire():` inside the actor (RateLimitExceeded -> retried)")
    obs = (f"6 messages, 2 worker threads: executions per aligned 1-s window {counts} (max {mx}, limit 2), "
           f"span {ts[-1] - ts[0]:.2f} s")
    if ok:
        return lab.result("yes", api, obs)
    return lab.result("partial", api, obs + " - the limit was exceeded", missing="more than `limit` executions "
                      "in one window were observed in this run")


def dead_letter_queues(lab: Lab) -> ProbeResult:
    t = _setup(lab, "dlq")
    _worker(lab, ready=False)
    t.always_fails.send()
    lab.wait_events("fail", 1, 30)
    counts = wait_until(lambda: (c := t.broker.get_queue_message_counts(lab.queue)) and c[2] >= 1 and c, 15)
    ok = bool(counts) and counts[2] >= 1
    return lab.result("yes" if ok else "no",
                      "@dramatiq.actor(max_retries=0); RabbitmqBroker.get_queue_message_counts(queue) -> (ready, delayed, dead)",
                      f"after the final failure the queue's dead-letter queue {lab.queue}.XQ holds "
                      f"{counts[2] if counts else 0} message(s) (counts {counts})")


def result_storage(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _worker(lab, ready=False)
    m = t.add.send(20, 22)
    from dramatiq.results.backends import RedisBackend

    v = RedisBackend(url=REDIS_URL, namespace=f"probe.{lab.token}.results").get_result(m, block=True, timeout=30_000)
    return lab.result("yes" if v == 42 else "no",
                      "broker.add_middleware(dramatiq.results.Results(backend=RedisBackend(...))); "
                      "@actor(store_results=True); backend.get_result(message, block=True)",
                      f"result read through a fresh RedisBackend: {v!r} (Results middleware ships inside dramatiq)")


def task_routing(lab: Lab) -> ProbeResult:
    t = _setup(lab)
    _worker(lab, queues=(lab.queue + ".a",))
    t.on_a.send()
    t.on_b.send()
    lab.wait_events("mark", 1, 15)
    time.sleep(1.5)
    labels = [e["label"] for e in lab.events("mark")]
    ok = labels == ["a"]
    return lab.result("yes" if ok else "no", "@dramatiq.actor(queue_name=Q.a | Q.b); `dramatiq module -Q Q.a`",
                      f"worker on Q.a ran {labels}; the Q.b message was not consumed")


def custom_serializers(lab: Lab) -> ProbeResult:
    t = _setup(lab, "encoder")
    m = t.add.send(1, 2)
    raw = list(t.broker.client.hvals(f"probe.{lab.token}:{lab.queue}.msgs"))
    _worker(lab, ready=False)
    v = m.get_result(block=True, timeout=30_000)
    decoded = any(e["name"] == "decode" for e in lab.events())
    ok = bool(raw) and raw[0][:5] == b"PROBE" and v == 3 and decoded
    return lab.result("yes" if ok else "no", "dramatiq.set_encoder(ProbeEncoder()) (subclass of dramatiq.encoder.Encoder)",
                      f"stored message starts {raw[0][:12] if raw else None!r}; worker decoded with it: {decoded}; "
                      f"result {v!r}")


def monitoring_apis(lab: Lab) -> ProbeResult:
    t = _setup(lab, "monitor")
    t.add.send(1, 1)
    t.mark.send_with_options(args=("later",), delay=60_000)
    counts = wait_until(lambda: (c := t.broker.get_queue_message_counts(lab.queue)) and c[0] >= 1 and c, 10)
    redis_api = [n for n in dir(__import__("dramatiq.brokers.redis", fromlist=["RedisBroker"]).RedisBroker)
                 if n.startswith(("get_", "list_", "inspect"))]
    ok = bool(counts) and counts[0] == 1
    return lab.result(
        "partial" if ok else "no", "RabbitmqBroker.get_queue_message_counts(queue) -> (ready, delayed, dead)",
        f"with 1 queued and 1 delayed message and no worker: counts {counts}; RedisBroker inspection methods: "
        f"{redis_api}; Prometheus middleware needs prometheus-client (not installed)",
        missing="message counts on RabbitMQ only: no API lists queued/running messages or workers; the Redis broker "
                "has no inspection API (dashboards are separate packages: dramatiq-dashboard)" if ok else None)


MIN = '''
import dramatiq
from dramatiq.brokers.redis import RedisBroker
dramatiq.set_broker(RedisBroker(url="{url}", namespace="{ns}"))
@dramatiq.actor
def add(x, y):
    print(x + y, flush=True)
'''


def _minimal(lab: Lab) -> tuple[bool, str, list[Any]]:
    tasks = lab.write("mintasks.py", MIN.format(url=REDIS_URL, ns=f"probe.{lab.token}.min"), preamble=False)
    prod = lab.write("minprod.py", "from mintasks import add\nadd.send(2, 3)\n", preamble=False)
    w = lab.worker([bin_path("dramatiq"), "mintasks", "-p", "1", "-t", "1"])
    subprocess.run(check=False, args=[sys.executable, str(prod)], cwd=lab.tmp, env=lab.env(), capture_output=True, text=True, timeout=30)
    ok = bool(wait_until(lambda: "5" in w.output().split(), 20))
    return ok, f"worker printed 5: {ok}", [tasks, prod]


def setup_simplicity(lab: Lab) -> ProbeResult:
    ok, detail, files = _minimal(lab)
    return setup_probe(lab, files, ["dramatiq worker"], ["dramatiq[redis]"], ["broker URL"], ok, detail)


def configuration(lab: Lab) -> ProbeResult:
    from dramatiq import get_broker
    from dramatiq.brokers.redis import RedisBroker

    from .rq import _cli_options, config_verdict

    ok, detail, _ = _minimal(lab)
    n_cli = _cli_options([bin_path("dramatiq"), "--help"], lab)
    n_actor = len(get_broker().actor_options) if ok else 0
    return config_verdict(lab, ok, detail, ["broker URL (set_broker)"],
                          {"dramatiq --help options": n_cli, "actor options of the default middleware": n_actor,
                           "RedisBroker() parameters": n_params(RedisBroker.__init__)})


def debugging_tools(lab: Lab) -> ProbeResult:
    import dramatiq
    from dramatiq.brokers.stub import StubBroker

    help_text = subprocess.run(check=False, args=[bin_path("dramatiq"), "--help"], capture_output=True, text=True, timeout=30).stdout
    broker = StubBroker()
    dramatiq.set_broker(broker)
    seen = []

    @dramatiq.actor(broker=broker)
    def add(x: int, y: int) -> None:
        seen.append(x + y)

    add.send(4, 5)
    w = dramatiq.Worker(broker, worker_timeout=100)
    w.start()
    broker.join(add.queue_name)
    w.join()
    w.stop()
    inspect_cmd = [c for c in ("inspect", "status", "info") if f" {c}" in help_text]
    obs = (f"dramatiq CLI has no inspection subcommand ({inspect_cmd or 'none of inspect/status/info'} in --help; "
           f"it offers --watch reload and verbose logging); StubBroker + in-process Worker ran the actor: {seen}")
    api = "dramatiq.brokers.stub.StubBroker + dramatiq.Worker(broker) in-process; `dramatiq --help`"
    if seen == [9] and not inspect_cmd:
        return lab.result("partial", api, obs, missing="no CLI/tool that inspects a live worker or queue")
    return lab.result("yes" if seen == [9] else "no", api, obs)


def documentation(lab: Lab) -> ProbeResult:
    return documentation_probe(lab, "dramatiq", "dramatiq")


def type_safety(lab: Lab) -> ProbeResult:
    header = '''
import dramatiq
@dramatiq.actor
def add(x: int, y: int) -> int:
    return x + y
'''
    good, flagged, out = mypy_check(lab, "add.send(1, 2)\n", 'add.send("one", 2)\n', header, "dramatiq")
    api = "mypy on `add.send('one', 2)` where @dramatiq.actor def add(x: int, y: int)"
    if good and flagged:
        return lab.result("yes", api, out)
    return lab.result("no", api, f"wrong argument type not flagged ({out})" if good else out)


def async_support(lab: Lab) -> ProbeResult:
    t = _setup(lab, "async")
    _worker(lab, threads=1)
    ms = [t.asleep.send(i) for i in range(3)]
    vals = [m.get_result(block=True, timeout=30_000) for m in ms]
    starts = sorted(e["t"] for e in lab.events("astart"))
    ends = sorted(e["t"] for e in lab.events("aend"))
    overlapped = len(starts) == 3 and starts[-1] < ends[0]
    obs = (f"3 `async def` actors (0.6 s sleep) on 1 worker thread returned {vals}; they "
           f"{'interleaved' if overlapped else 'ran one after another'} (span {ends[-1] - starts[0]:.2f} s)")
    api = "broker.add_middleware(dramatiq.middleware.asyncio.AsyncIO()); @dramatiq.actor async def"
    if vals != [0, 1, 2]:
        return lab.result("no", api, obs)
    if overlapped:
        return lab.result("yes", api, obs)
    return lab.result("partial", api, obs, missing="async actors run on an event-loop thread but each worker thread "
                      "blocks on its coroutine, so they do not interleave beyond the thread count; send() is sync")


def claim_result_storage(lab: Lab) -> ProbeResult:
    r = result_storage(lab)
    return lab.result(r.verdict, r.api, r.observed, holds=False if r.verdict == "yes" else None)


def claim_progress_tracking(lab: Lab) -> ProbeResult:
    hits = grep_package("dramatiq", r"def \w*(progress|update_state|save_meta|set_meta)\w*\(")
    from dramatiq.results import ResultBackend

    methods = sorted(n for n in dir(ResultBackend) if not n.startswith("_"))
    holds = not hits
    return lab.result(
        "no" if holds else "unknown",
        "static check: regex for a def named *progress*/update_state/save_meta/set_meta over the installed dramatiq "
        "source (celery has Task.update_state, rq Job.save_meta); ResultBackend methods",
        f"API definitions found: {hits[:5] or 'none'}; ResultBackend offers {methods} - only final results, no interim state a "
        "running actor could publish (progress needs your own store)", holds=holds if hits == [] else None)


PROBES = {name: globals()[name] for name in (
    "basic_queuing", "retries", "scheduling_delay", "scheduling_periodic", "priority", "chaining", "groups",
    "rate_limiting", "dead_letter_queues", "result_storage", "task_routing", "custom_serializers", "monitoring_apis",
    "setup_simplicity", "configuration", "debugging_tools", "documentation", "type_safety", "async_support",
    "claim_result_storage", "claim_progress_tracking")}
