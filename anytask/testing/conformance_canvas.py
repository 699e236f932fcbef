"""Conformance cases of the canvas: chain, group, chord (docs/canvas.md), with real workers.

Imported by :mod:`anytask.testing.conformance`; every case skips only through the declared
CHAIN / GROUP / CHORD capability, and ``test_canvas_unsupported_raises`` checks the refusals.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

import anytask
from anytask import Feature, Status
from anytask.facade.errors import ConfigurationError, NotSerializable, TaskFailed, UnsupportedFeature

from . import tasks
from .plugin import BackendUnderTest

from .conformance import RESULT_TIMEOUT, lines, needs, needs_own_worker, side_queue, tmpfile
from .workers import WorkerProcess

SETTLE = 1.5  # seconds given to a link/callback that must NOT run, to show itself if it wrongly does


def test_canvas_chain_passes_results(anytask_backend: BackendUnderTest) -> None:
    needs(anytask_backend, Feature.CHAIN)
    c = anytask_backend.client
    h = c.submit(tasks.add.s(1, 2) | tasks.add.s(10) | tasks.add.s(100))
    assert len(h.ids) == 3 and len(set(h.ids)) == 3 and h.id == h.ids[-1]
    assert h.result(timeout=RESULT_TIMEOUT) == 113
    assert [c.get(i).value for i in h.ids] == [3, 13, 113]
    assert h.status() is Status.SUCCEEDED and c.status(h.id) is Status.SUCCEEDED
    path = tmpfile(anytask_backend, "chain")
    h2 = c.submit(anytask.chain(tasks.collect.s([], path, "a"), tasks.collect.s(path, "b"), tasks.collect.s(path, "c")))
    assert asyncio.run(h2.aresult(timeout=RESULT_TIMEOUT)) == ["a", "b", "c"]
    assert lines(path) == ["a", "b", "c"]


def test_canvas_chain_stops_on_failure(anytask_backend: BackendUnderTest) -> None:
    needs(anytask_backend, Feature.CHAIN)
    c = anytask_backend.client
    path = tmpfile(anytask_backend, "chainfail")
    h = c.submit(tasks.collect.s([], path, "a") | tasks.boom_after.s("stop here") | tasks.collect.s(path, "c")
                 | tasks.collect.s(path, "d"))
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=RESULT_TIMEOUT)
    assert ei.value.task_id == h.ids[1] and ei.value.exc_type == "anytask.testing.tasks.TaskBoom"
    assert "stop here" in ei.value.message and "['a']" in ei.value.message  # it got link 0's result
    time.sleep(SETTLE)
    assert lines(path) == ["a"], "a link after the failed one ran"
    links = h.links()
    assert [r.status for r in links] == [Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.CANCELLED]
    assert h.ids[1] in links[2].note and "FAILED" in links[2].note
    assert h.status() is Status.FAILED
    # emulated: never submitted (UNKNOWN); native (Celery): its record reads the propagated FAILURE
    assert c.status(h.ids[2]) in (Status.UNKNOWN, Status.FAILED, Status.CANCELLED), "a never-run link looks pending"


def test_canvas_chain_link_retries_and_async_links(anytask_backend: BackendUnderTest) -> None:
    """The continuation survives a retried attempt (it must travel again with the retry), and async
    task functions pass results the same way."""
    needs(anytask_backend, Feature.CHAIN)
    c = anytask_backend.client
    if anytask_backend.capabilities.supports(Feature.RETRIES):
        path = tmpfile(anytask_backend, "chainretry")
        h = c.submit(tasks.flaky.s(path, 1).using(retries=1) | tasks.add.s(10))
        assert h.result(timeout=RESULT_TIMEOUT) == 12  # run 2 succeeded, then 2 + 10
        assert len(lines(path)) == 2
    if anytask_backend.capabilities.supports(Feature.ASYNC_TASKS):
        h2 = asyncio.run(c.asubmit(tasks.async_add.s(1, 2) | tasks.async_add.s(3) | tasks.add.s(4)))
        assert h2.result(timeout=RESULT_TIMEOUT) == 10


def test_canvas_cancelled_link_stops_the_chain(anytask_backend: BackendUnderTest) -> None:
    needs(anytask_backend, Feature.CHAIN)
    needs(anytask_backend, Feature.CANCEL)
    needs_own_worker(anytask_backend)
    c = anytask_backend.client
    path = tmpfile(anytask_backend, "chaincancel")
    with side_queue(anytask_backend, "chaincancel") as q:
        h = c.submit(tasks.collect.s([], path, "a").using(queue=q) | tasks.collect.s(path, "b").using(queue=q))
        assert c.cancel(h.ids[0]).cancelled
        with WorkerProcess(anytask_backend.url, queues=(q,), concurrency=1):
            sentinel = c.submit(tasks.record.using(queue=q), path, "sentinel")
            assert sentinel.result(timeout=RESULT_TIMEOUT * 2) == "sentinel"
            time.sleep(SETTLE)
    assert lines(path) == ["sentinel"], "a cancelled chain ran"
    assert [r.status for r in h.links()] == [Status.CANCELLED, Status.CANCELLED]
    assert c.status(h.ids[1]) in (Status.UNKNOWN, Status.CANCELLED), "a never-run link looks pending"
    with pytest.raises(anytask.TaskCancelled):
        h.result(timeout=1)


def test_canvas_group_gathers_in_order(anytask_backend: BackendUnderTest) -> None:
    needs(anytask_backend, Feature.GROUP)
    c = anytask_backend.client
    n = 5
    # later members finish first: the gather must follow member order, not completion order
    g = c.submit(anytask.group(tasks.sleep.s(0.2 * (n - i), i) for i in range(n)))
    assert len(g.ids) == n and len(set(g.ids)) == n
    assert g.results(timeout=RESULT_TIMEOUT) == list(range(n))
    assert g.statuses() == [Status.SUCCEEDED] * n
    assert [h.result(timeout=1) for h in g.handles] == list(range(n))
    g2 = c.submit(anytask.group([tasks.add.s(1, 1), tasks.fail.s("member 1"), tasks.add.s(2, 2)]))
    with pytest.raises(TaskFailed) as ei:
        asyncio.run(g2.aresults(timeout=RESULT_TIMEOUT))
    assert ei.value.task_id == g2.ids[1]
    assert asyncio.run(g2.astatuses())[0] is Status.SUCCEEDED


def test_canvas_chord_callback_runs_once_with_all_results(anytask_backend: BackendUnderTest) -> None:
    needs(anytask_backend, Feature.CHORD)
    c = anytask_backend.client
    path = tmpfile(anytask_backend, "chord")
    handles = []
    for round_ in range(3):
        # every member sleeps until the same instant: they finish (and count) simultaneously
        at = time.time() + 1.0
        members = [tasks.sleep_until.s(at, f"r{round_}m{i}") for i in range(6)]
        handles.append(c.submit(anytask.chord(members, tasks.gather.s(path, f"cb{round_}"))))
    for round_, h in enumerate(handles):
        assert h.result(timeout=RESULT_TIMEOUT * 2) == [f"r{round_}m{i}" for i in range(6)]
        assert h.status() is Status.SUCCEEDED and h.group.statuses() == [Status.SUCCEEDED] * 6
    time.sleep(SETTLE)
    assert sorted(lines(path)) == ["cb0", "cb1", "cb2"], f"callback executions: {lines(path)}"
    # the | form, with the callback's own arguments after the results
    h = c.submit(anytask.group(tasks.add.s(1, 1), tasks.add.s(2, 2)) | tasks.gather.s(path, "cb3"))
    assert h.result(timeout=RESULT_TIMEOUT) == [2, 4]


def test_canvas_chord_member_failure_means_no_callback(anytask_backend: BackendUnderTest) -> None:
    needs(anytask_backend, Feature.CHORD)
    c = anytask_backend.client
    path = tmpfile(anytask_backend, "chordfail")
    h = c.submit(anytask.chord([tasks.add.s(1, 1), tasks.fail.s("member fails"), tasks.add.s(3, 3)],
                               tasks.gather.s(path, "cb")))
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=RESULT_TIMEOUT)
    # emulated: anytask.ChordMemberFailed; native (Celery): celery.exceptions.ChordError; both name the member
    assert ei.value.exc_type in ("anytask.ChordMemberFailed", "celery.exceptions.ChordError"), ei.value
    assert h.group.ids[1] in ei.value.message and ei.value.task_id == h.id
    time.sleep(SETTLE)
    assert lines(path) == [], "the callback ran although a member failed"
    assert h.status() is Status.FAILED and c.status(h.id) in (Status.UNKNOWN, Status.FAILED)


def test_canvas_checks_before_enqueue(anytask_backend: BackendUnderTest) -> None:
    """Every signature is checked before the first message goes out."""
    caps = anytask_backend.capabilities
    c = anytask_backend.client
    path = tmpfile(anytask_backend, "nothing")
    if caps.supports(Feature.CHAIN):
        with pytest.raises(NotSerializable):
            c.submit(tasks.collect.s([], path, "a") | tasks.echo.s(object()))
    if caps.supports(Feature.GROUP):
        with pytest.raises(NotSerializable):
            c.submit(anytask.group(tasks.collect.s([], path, "a"), tasks.echo.s({1, 2})))
    with pytest.raises(ConfigurationError, match="unique_key"):
        anytask.group(tasks.add.s(1, 1).using(unique_key=f"k{uuid.uuid4().hex}"))
    with pytest.raises(anytask.InvalidTask, match="not a signature"):
        anytask.chain(tasks.add.s(1, 1), tasks.add)  # type: ignore[arg-type]
    time.sleep(SETTLE if caps.supports(Feature.CHAIN) or caps.supports(Feature.GROUP) else 0)
    assert lines(path) == []


def test_canvas_unsupported_raises(anytask_backend: BackendUnderTest) -> None:
    caps = anytask_backend.capabilities
    canvases = {Feature.CHAIN: tasks.add.s(1, 1) | tasks.add.s(2),
                Feature.GROUP: anytask.group(tasks.add.s(1, 1)),
                Feature.CHORD: anytask.chord([tasks.add.s(1, 1)], tasks.echo.s())}
    refused = [f for f in canvases if not caps.supports(f)]
    if not refused:
        pytest.skip(f"{anytask_backend.case.id} declares chain, group and chord supported")
    for feature in refused:
        with pytest.raises(UnsupportedFeature) as ei:
            anytask_backend.client.submit(canvases[feature])  # type: ignore[call-overload]
        assert feature.value in str(ei.value) and anytask_backend.client.backend in str(ei.value)
