"""RQ probes: RQ's own API (rq.Queue, rq.Retry, rq.cron, rq.group.Group, ...) and its `rq` CLI worker."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

from .common import (
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
)
from .result import ProbeResult


def VERSION() -> str:
    return version_of("rq")


TASKS = '''
import asyncio, time
from rq import get_current_job

def add(x, y):
    rec("add", x=x, y=y)
    return x + y

def flaky(fails):
    n = count("flaky")
    rec("flaky", attempt=n)
    if n <= fails:
        raise RuntimeError("attempt %d fails" % n)
    return n

def always_fails():
    rec("fail")
    raise RuntimeError("always fails")

def mark(label):
    rec("mark", label=label)
    return label

def slow(label, secs):
    rec("start", label=label)
    time.sleep(secs)
    rec("end", label=label)
    return label

def double_parent():
    job = get_current_job()
    parent = job.fetch_dependencies()[0]
    v = parent.return_value()
    rec("child", got=v)
    return v * 2

async def aadd(x, y):
    await asyncio.sleep(0.01)
    rec("aadd")
    return x + y

class ProbeSerializer:
    """Custom serializer: JSON with a marker, records where it is used."""
    import json as _j
    @classmethod
    def dumps(cls, obj):
        return b"PROBE" + cls._j.dumps(obj).encode()
    @classmethod
    def loads(cls, data):
        rec("loads")
        assert data[:5] == b"PROBE", data[:20]
        return cls._j.loads(data[5:])
'''


def _setup(lab: Lab) -> tuple[Any, Any, Any]:
    import redis
    from rq import Queue

    lab.write("rqtasks.py", TASKS)
    import rqtasks  # type: ignore[import-not-found]

    conn = redis.Redis.from_url(REDIS_URL)
    return conn, Queue(lab.queue, connection=conn), rqtasks


def _worker(lab: Lab, *queues: str, extra: tuple[str, ...] = (), name: str = "worker") -> Any:
    return lab.worker([bin_path("rq"), "worker", "--url", REDIS_URL, "--logging_level", "WARNING", *extra,
                       *(queues or (lab.queue,))], name)


def _wait_job(job: Any, timeout: float = 20) -> str:
    def done() -> bool:
        job.refresh()
        return _st(job) in ("finished", "failed")
    wait_until(done, timeout)
    return _st(job)


def _st(job: Any) -> str:
    st = job.get_status()
    return str(getattr(st, "value", st))


def basic_queuing(lab: Lab) -> ProbeResult:
    _conn, q, t = _setup(lab)
    job = q.enqueue(t.add, 2, 3)
    _worker(lab)
    status = _wait_job(job)
    rv = job.return_value()
    ok = status == "finished" and rv == 5
    return lab.result("yes" if ok else "no", "Queue(name, connection=Redis).enqueue(add, 2, 3); `rq worker`",
                      f"job status {status}, return_value() = {rv!r}, executed by worker pid "
                      f"{[e['pid'] for e in lab.events('add')]}")


def retries(lab: Lab) -> ProbeResult:
    from rq import Retry

    _conn, q, t = _setup(lab)
    job = q.enqueue(t.flaky, 2, retry=Retry(max=2))
    _worker(lab)
    status = _wait_job(job, 25)
    attempts = [e["attempt"] for e in lab.events("flaky")]
    ok = status == "finished" and attempts == [1, 2, 3]
    return lab.result("yes" if ok else "no", "queue.enqueue(flaky, 2, retry=Retry(max=2))",
                      f"attempts {attempts}, final status {status}, return_value {job.return_value()!r}")


def scheduling_delay(lab: Lab) -> ProbeResult:
    _conn, q, t = _setup(lab)
    _worker(lab, extra=("--with-scheduler",))
    t0 = time.time()
    q.enqueue_in(timedelta(seconds=2), t.mark, "delayed")
    evs = lab.wait_events("mark", 1, 20)
    if not evs:
        raise ProbeFailed("delayed job never ran in 20 s: " + lab.worker_logs())
    lag = evs[0]["t"] - t0
    ok = delay_honoured(lag)
    return lab.result("yes" if ok else "no", "queue.enqueue_in(timedelta(seconds=2), f); `rq worker --with-scheduler`",
                      f"job ran {lag:.2f} s after enqueue_in(2 s)" + (
                          " - RQ stores the due time in whole seconds (ScheduledJobRegistry.schedule truncates "
                          "with utctimetuple), so a delayed job can start up to 1 s early" if lag < 1.9 else ""))


def scheduling_periodic(lab: Lab) -> ProbeResult:
    _conn, _q, _t = _setup(lab)
    lab.write("rqcron.py", f'''
from rq import cron
from rqtasks import mark
cron.register(mark, {lab.queue!r}, args=("tick",), interval=1)
''', preamble=False)
    _worker(lab)
    lab.worker([bin_path("rq"), "cron", "--url", REDIS_URL, "rqcron.py"], "cron")
    evs = lab.wait_events("mark", 3, 25)
    times = [round(e["t"] - evs[0]["t"], 2) for e in evs]
    ok = len(evs) >= 3
    return lab.result("yes" if ok else "no", "rq.cron.register(mark, queue, interval=1) in a config file; `rq cron FILE`",
                      f"{len(evs)} periodic runs at +{times} s" + ("" if ok else "; " + lab.worker_logs()))


def priority(lab: Lab) -> ProbeResult:
    from rq import Queue

    conn, q, t = _setup(lab)
    high = Queue(lab.queue + ".high", connection=conn)
    for i in range(3):
        q.enqueue(t.mark, f"low{i}")
    for i in range(3):
        high.enqueue(t.mark, f"high{i}")
    q.enqueue(t.mark, "front", at_front=True)
    _worker(lab, high.name, q.name, extra=("--burst",))
    evs = lab.wait_events("mark", 7, 20)
    order = [e["label"] for e in evs]
    queue_order = order[:3] == ["high0", "high1", "high2"]
    front = len(order) > 3 and order[3] == "front"
    ok = queue_order and front
    return lab.result(
        "partial" if ok else "no",
        "`rq worker HIGH LOW` (queues served in the order given) + queue.enqueue(f, at_front=True)",
        f"enqueued low0-2 to LOW, high0-2 to HIGH, 'front' to LOW with at_front; execution order {order}",
        missing="no per-job priority value: priority exists only as the order of queues a worker listens to "
                "and enqueue(at_front=True)" if ok else None)


def chaining(lab: Lab) -> ProbeResult:
    _conn, q, t = _setup(lab)
    a = q.enqueue(t.add, 2, 3)
    b = q.enqueue(t.double_parent, depends_on=a)
    _worker(lab)
    status = _wait_job(b)
    got = [e.get("got") for e in lab.events("child")]
    ok = status == "finished" and b.return_value() == 10
    return lab.result(
        "partial" if ok else "no", "queue.enqueue(g, depends_on=job_a); g reads get_current_job().fetch_dependencies()",
        f"dependent job ran after its parent ({status}), read parent's result {got}, returned {b.return_value()!r}",
        missing="no result passing: the dependent job must fetch its parent's result itself "
                "(depends_on only orders execution)" if ok else None)


def groups(lab: Lab) -> ProbeResult:
    from rq import Queue
    from rq.group import Group

    conn, q, t = _setup(lab)
    group = Group.create(connection=conn, name=lab.token)
    jobs = group.enqueue_many(q, [Queue.prepare_data(t.add, (i, i)) for i in range(4)])
    _worker(lab)
    for j in jobs:
        _wait_job(j)
    results = [j.return_value() for j in jobs]
    members = len(Group.fetch(lab.token, conn).get_jobs())
    ok = results == [0, 2, 4, 6]
    return lab.result("yes" if ok else "no",
                      "rq.group.Group.create(connection).enqueue_many(queue, [Queue.prepare_data(add, (i, i))])",
                      f"group of 4 jobs ran, results {results}, Group.fetch(name).get_jobs() lists {members} job(s); "
                      "no built-in fan-in callback (chord) - a job can depends_on several jobs instead")


def _overlaps(lab: Lab, labels: list[str]) -> int:
    starts = {e["label"]: e["t"] for e in lab.events("start") if e["label"] in labels}
    ends = {e["label"]: e["t"] for e in lab.events("end") if e["label"] in labels}
    return sum(1 for a in labels for b in labels
               if a < b and a in ends and b in ends and starts[a] < ends[b] and starts[b] < ends[a])


def rate_limiting(lab: Lab) -> ProbeResult:
    from rq.rate_limit import RateLimit

    _conn, q, t = _setup(lab)
    limited = [f"j{i}" for i in range(4)]
    for label in limited:
        q.enqueue(t.slow, label, 0.6, rate_limit=RateLimit(key=lab.token, concurrency=1))
    _worker(lab, name="w1")
    _worker(lab, name="w2")
    ends = lab.wait_events("end", 4, 30)
    overlap = _overlaps(lab, limited)
    # control: the same two workers overlap two jobs without a limit
    for label in ("c0", "c1"):
        q.enqueue(t.slow, label, 0.6)
    lab.wait_events("end", 6, 20)
    control = _overlaps(lab, ["c0", "c1"])
    ok = len(ends) >= 4 and overlap == 0 and control == 1
    return lab.result(
        "partial" if ok else "no",
        "queue.enqueue(f, rate_limit=rq.rate_limit.RateLimit(key, concurrency=1)), two `rq worker` processes",
        f"4 jobs of 0.6 s with concurrency limit 1 over 2 workers: {overlap} overlapping pairs; control (2 jobs "
        f"without the limit, same workers): {control} overlapping pair",
        missing="concurrency limit only (jobs in flight per key), no rate per time window" if ok else None)


def dead_letter_queues(lab: Lab) -> ProbeResult:
    from rq import Retry
    from rq.registry import FailedJobRegistry

    _conn, q, t = _setup(lab)
    job = q.enqueue(t.always_fails, retry=Retry(max=1))
    _worker(lab)
    status = _wait_job(job, 25)
    reg = FailedJobRegistry(queue=q)
    in_reg = job.id in reg.get_job_ids()
    attempts = len(lab.events("fail"))
    requeued = False
    if in_reg:
        reg.requeue(job.id)
        requeued = bool(wait_until(lambda: len(lab.events("fail")) > attempts, 15))
    ok = status == "failed" and in_reg and requeued
    return lab.result("yes" if ok else "no",
                      "FailedJobRegistry(queue=q).get_job_ids() / .requeue(job_id) after Retry(max=1) is exhausted",
                      f"after {attempts} attempts status {status}; in FailedJobRegistry: {in_reg}; requeue re-ran it: "
                      f"{requeued}")


def result_storage(lab: Lab) -> ProbeResult:
    from rq.job import Job

    _conn, q, t = _setup(lab)
    job = q.enqueue(t.add, 20, 22, result_ttl=60)
    _worker(lab)
    _wait_job(job)
    import redis

    fetched = Job.fetch(job.id, connection=redis.Redis.from_url(REDIS_URL))
    rv = fetched.return_value()
    ok = rv == 42
    return lab.result("yes" if ok else "no", "Job.fetch(id, connection).return_value() (result_ttl=60)",
                      f"result read back from Redis in a fresh connection: {rv!r}")


def task_routing(lab: Lab) -> ProbeResult:
    _conn, _q, _t = _setup(lab)
    lab.write("rqroute.py", f'''
import redis
from rq.decorators import job
conn = redis.Redis.from_url({REDIS_URL!r})
@job({lab.queue + ".a"!r}, connection=conn)
def on_a(): rec("mark", label="a")
@job({lab.queue + ".b"!r}, connection=conn)
def on_b(): rec("mark", label="b")
''')
    import rqroute  # type: ignore[import-not-found]

    _ja, jb = rqroute.on_a.delay(), rqroute.on_b.delay()
    _worker(lab, lab.queue + ".a")
    lab.wait_events("mark", 1, 15)
    time.sleep(1.5)
    labels = [e["label"] for e in lab.events("mark")]
    jb.refresh()
    ok = labels == ["a"] and _st(jb) == "queued"
    return lab.result("yes" if ok else "no", "@rq.decorators.job('queue-name') per task; `rq worker QUEUE`",
                      f"worker on queue a ran {labels}; the job of queue b stayed {_st(jb)}")


def custom_serializers(lab: Lab) -> ProbeResult:
    from rq import Queue

    conn, q, t = _setup(lab)
    q = Queue(lab.queue, connection=conn, serializer=t.ProbeSerializer)
    job = q.enqueue(t.add, 1, 2)
    raw = conn.hget(job.key, "data") or b""
    import zlib

    try:
        raw = zlib.decompress(raw)  # rq compresses the serialized payload
    except zlib.error:
        pass
    _worker(lab, extra=("--serializer", "rqtasks.ProbeSerializer"))
    status = _wait_job(job)
    loads_in_worker = any(e["name"] == "loads" for e in lab.events())
    ok = raw[:5] == b"PROBE" and status == "finished" and job.return_value() == 3
    return lab.result("yes" if ok else "no",
                      "Queue(..., serializer=ProbeSerializer) + `rq worker --serializer rqtasks.ProbeSerializer`",
                      f"stored job data starts {raw[:12]!r}; worker used the serializer's loads: {loads_in_worker}; "
                      f"status {status}, result {job.return_value()!r}")


def monitoring_apis(lab: Lab) -> ProbeResult:
    from rq.job import Job

    conn, q, t = _setup(lab)
    job = q.enqueue(t.add, 1, 1)
    ids, n = q.get_job_ids(), q.count
    st = _st(Job.fetch(job.id, connection=conn))
    from rq.registry import StartedJobRegistry

    ok = job.id in ids and n == 1 and st == "queued"
    return lab.result("yes" if ok else "no",
                      "queue.get_job_ids(), queue.count, Job.fetch(id).get_status(), registries (Started/Failed/...)",
                      f"with no worker: count={n}, job id listed={job.id in ids}, status={st}; "
                      f"StartedJobRegistry count={StartedJobRegistry(queue=q).count}")


def _minimal(lab: Lab) -> tuple[bool, str, list[Any]]:
    tasks = lab.write("mintasks.py", "def add(x, y):\n    return x + y\n", preamble=False)
    prod = lab.write("minprod.py", f'''
import time, redis
from rq import Queue
from mintasks import add
job = Queue({lab.queue!r}, connection=redis.Redis.from_url({REDIS_URL!r})).enqueue(add, 2, 3)
while job.get_status() != "finished":
    time.sleep(0.1)
print(job.return_value())
''', preamble=False)
    _worker(lab)
    out = subprocess.run(check=False, args=[sys.executable, str(prod)], cwd=lab.tmp, env=lab.env(), capture_output=True, text=True,
                         timeout=30)
    return out.stdout.strip() == "5", f"producer printed {out.stdout.strip()!r}", [tasks, prod]


def setup_simplicity(lab: Lab) -> ProbeResult:
    ok, detail, files = _minimal(lab)
    return setup_probe(lab, files, ["rq worker"], ["rq"], ["redis URL"], ok, detail)


def _cli_options(argv: list[str], lab: Lab) -> int:
    out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=30, env=lab.env()).stdout
    return len(set(re.findall(r"(?<![\w-])--[a-zA-Z][\w-]+", out)))


def configuration(lab: Lab) -> ProbeResult:
    ok, detail, _ = _minimal(lab)
    n_cli = _cli_options([bin_path("rq"), "worker", "--help"], lab)
    from rq import Queue, defaults

    n_defaults = len([k for k in vars(defaults) if k.isupper()])
    return config_verdict(lab, ok, detail, ["redis URL"], {"rq worker --help options": n_cli,
                                                           "rq.defaults constants": n_defaults,
                                                           "Queue() parameters": n_params(Queue.__init__)})


def config_verdict(lab: Lab, ran: bool, detail: str, minimal_keys: list[str], surface: dict[str, int]) -> ProbeResult:
    total = sum(surface.values())
    measure = {"minimal_config_keys": len(minimal_keys), "surface": surface, "surface_total": total}
    observed = (f"minimal producer+worker ({detail}) needed {len(minimal_keys)} configuration key(s) "
                f"{minimal_keys}; configuration surface {surface} = {total}")
    api = "keys of the minimal working example + counted settings/CLI options"
    if not ran:
        return lab.result("unknown", api, "minimal example did not run: " + detail, measure=measure)
    if len(minimal_keys) <= 2 and total <= 60:
        return lab.result("yes", api, observed + " -> simple (<=2 keys, surface <=60)", measure=measure)
    if len(minimal_keys) <= 3 and total <= 150:
        return lab.result("partial", api, observed + " -> medium (surface 61-150)",
                          missing="medium configuration surface (61-150 settings/options)", measure=measure)
    return lab.result("no", api, observed + " -> complex (>3 keys or surface >150)", measure=measure)


def debugging_tools(lab: Lab) -> ProbeResult:
    from rq import Queue

    conn, q, t = _setup(lab)
    q.enqueue(t.add, 1, 1)
    out = subprocess.run(check=False, args=[bin_path("rq"), "info", "--url", REDIS_URL, lab.queue], capture_output=True, text=True,
                         timeout=30, env=lab.env()).stdout
    cli_ok = bool(re.search(re.escape(lab.queue) + r".*\b1\b", out))
    sync = Queue(lab.queue + ".sync", connection=conn, is_async=False).enqueue(t.add, 4, 5)
    sync_ok = sync.return_value() == 9
    obs = (f"`rq info --url URL QUEUE` answered {out.strip().splitlines()[:2]!r} (queue with 1 job shown: {cli_ok}); "
           f"Queue(is_async=False).enqueue ran in-process, result {sync.return_value()!r}")
    api = "`rq info` CLI; Queue(is_async=False)"
    if cli_ok and sync_ok:
        return lab.result("yes", api, obs)
    if cli_ok or sync_ok:
        return lab.result("partial", api, obs, missing="CLI inspection" if not cli_ok else "in-process sync mode")
    return lab.result("no", api, obs)


def documentation(lab: Lab) -> ProbeResult:
    return documentation_probe(lab, "rq", "rq")


def type_safety(lab: Lab) -> ProbeResult:
    header = '''
import redis
from rq import Queue
def add(x: int, y: int) -> int:
    return x + y
q = Queue("q", connection=redis.Redis())
'''
    good, flagged, out = mypy_check(lab, 'q.enqueue(add, 1, 2)\n', 'q.enqueue(add, "one", 2)\n', header, "rq")
    api = "mypy on `Queue.enqueue(add, 'one', 2)` where add(x: int, y: int)"
    if good and flagged:
        return lab.result("yes", api, out)
    return lab.result("no", api, f"wrong argument type not flagged ({out})" if good else out)


def async_support(lab: Lab) -> ProbeResult:
    _conn, q, t = _setup(lab)
    job = q.enqueue(t.aadd, 2, 3)
    _worker(lab)
    status = _wait_job(job)
    rv = job.return_value()
    ok = status == "finished" and rv == 5
    return lab.result(
        "partial" if ok else "no", "queue.enqueue(async_def_function, 2, 3); `rq worker`",
        f"`async def` job status {status}, return_value {rv!r}",
        missing="the worker runs each coroutine to completion (one job at a time per work horse); "
                "no async producer API (enqueue is blocking)" if ok else None)


# ---- side claims

def claim_scheduling(lab: Lab) -> ProbeResult:
    r = scheduling_delay(lab)
    hits = grep_package("rq", r"^class CronScheduler")
    return lab.result(r.verdict, r.api + "; rq.cron.CronScheduler",
                      r.observed + f"; rq ships a cron scheduler: {hits}", holds=False if r.verdict == "yes" else None)


def claim_redis_only(lab: Lab) -> ProbeResult:
    import inspect

    from rq import Queue

    sig = str(inspect.signature(Queue.__init__).parameters["connection"])
    others = grep_package("rq", r"\b(amqp|kombu|sqs|kafka|sqlite|postgres)\b")
    err = None
    try:
        Queue("x", connection=object()).enqueue(print)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001
        err = f"{type(exc).__name__}: {str(exc)[:80]}"
    holds = not others and err is not None
    return lab.result("no" if holds else "yes", "Queue(name, connection=...) with a non-Redis connection object",
                      f"Queue connection parameter: {sig}; enqueue with a non-Redis connection raised {err}; "
                      f"source mentions of other brokers: {others[:5] or 'none'}",
                      holds=holds)


PROBES = {name: globals()[name] for name in (
    "basic_queuing", "retries", "scheduling_delay", "scheduling_periodic", "priority", "chaining", "groups",
    "rate_limiting", "dead_letter_queues", "result_storage", "task_routing", "custom_serializers", "monitoring_apis",
    "setup_simplicity", "configuration", "debugging_tools", "documentation", "type_safety", "async_support",
    "claim_scheduling", "claim_redis_only")}
