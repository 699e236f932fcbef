"""Canvas (chain, group, chord) without a broker: construction, wire format, refusals, and the
emulation on memory:// (the conformance suite runs it on every backend with real workers)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any, ClassVar

import pytest

import anytask
from anytask import Feature, Status
from anytask.adapters.memory import MemoryAdapter
from anytask.facade import continuation
from anytask.facade.canvas import CANVAS_KWARG, decode_options, encode_options
from anytask.facade.capabilities import Capabilities, unsupported
from anytask.facade.errors import ConfigurationError, InvalidTask, TaskFailed, UnsupportedFeature
from anytask.facade.task import Task
from anytask.testing import tasks


def test_operators_build_flat_chains_and_chords() -> None:
    a, b, c = tasks.add.s(1, 2), tasks.add.s(10), tasks.add.s(100)
    ch = a | b | c
    assert isinstance(ch, anytask.Chain) and ch.links == (a, b, c)
    assert anytask.chain(a | b, c) == ch and (a | (b | c)) == ch
    g = anytask.group([a, b])
    assert g == anytask.group(a, b) and g.members == (a, b)
    cd = g | c
    assert isinstance(cd, anytask.Chord) and cd.group == g and cd.callback == c
    assert anytask.chord([a, b], c) == cd
    assert tasks.add.s(1, y=2).kwargs == {"y": 2}
    assert a.using(queue="other").task.options.queue == "other" and a.task.options.queue == "default"


def test_bad_canvases_are_refused_when_built() -> None:
    with pytest.raises(ConfigurationError, match="empty chain"):
        anytask.chain()
    with pytest.raises(ConfigurationError, match="empty group"):
        anytask.group([])
    with pytest.raises(InvalidTask, match="not a signature"):
        anytask.group(tasks.add.s(1, 1), tasks.add)  # type: ignore[arg-type]
    with pytest.raises(InvalidTask, match="not a signature"):
        anytask.chord([tasks.add.s(1, 1)], anytask.group(tasks.add.s(1, 1)))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="reserved"):
        anytask.chain(tasks.echo.s(**{CANVAS_KWARG: 1}))
    with pytest.raises(ConfigurationError, match="unique_key"):
        anytask.chain(tasks.add.s(1, 1), tasks.add.s(2).using(unique_key="k"))


def test_options_travel_as_json_and_come_back() -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    opts = tasks.add.using(at=at, queue="q1", retries=2, priority=7).options
    wire = encode_options(opts)
    assert wire["at"] == at.isoformat() and wire["queue"] == "q1"
    assert tasks.add.using(**decode_options(wire)).options == opts


class _NoCanvas(MemoryAdapter):
    capabilities: ClassVar[Capabilities] = Capabilities(
        features={**MemoryAdapter.capabilities.features,
                  **{f: unsupported("not in this test backend") for f in (Feature.CHAIN, Feature.GROUP, Feature.CHORD)}},
        needs_worker=False)


def test_unsupported_canvas_raises_at_submit_and_enqueues_nothing(tmp_path: Any) -> None:
    client = anytask.connect("memory://?workers=2")
    client.adapter = _NoCanvas(client.url)
    path = str(tmp_path / "ran")
    for canvas, feature in [(tasks.collect.s([], path, "a") | tasks.collect.s(path, "b"), "chain"),
                            (anytask.group(tasks.collect.s([], path, "a")), "group"),
                            (anytask.chord([tasks.collect.s([], path, "a")], tasks.gather.s(path, "cb")), "chord")]:
        with pytest.raises(UnsupportedFeature) as ei:
            client.submit(canvas)  # type: ignore[call-overload]
        assert ei.value.feature == feature and "memory" in ei.value.supported_by
        assert "not in this test backend" in str(ei.value)
    assert not os.path.exists(path)


def test_a_continuation_outside_anytask_worker_says_how_to_start_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(continuation.ENV_WORKER_URL, raising=False)
    with pytest.raises(ConfigurationError, match="anytask worker"):
        continuation.worker_adapter(None)


def test_a_link_that_cannot_submit_its_successor_fails_with_the_reason() -> None:
    client = anytask.connect("memory://")
    unknown: Task[Any, Any] = Task(func=tasks.add.func, name="tests.nowhere.add")  # registered in no worker
    h = client.submit(tasks.add.s(1, 2) | unknown.s(1))
    with pytest.raises(TaskFailed) as ei:
        h.result(timeout=10)
    assert ei.value.task_id == h.ids[0] and ei.value.exc_type.endswith("ContinuationError")
    assert "succeeded but its continuation could not be submitted" in ei.value.message
    assert "tests.nowhere.add" in ei.value.message
    assert [r.status for r in h.links()] == [Status.FAILED, Status.CANCELLED]


def test_chord_callback_is_submitted_once_under_contention(tmp_path: Any) -> None:
    client = anytask.connect("memory://?workers=8")
    path = str(tmp_path / "callbacks")
    handles = [client.submit(anytask.chord([tasks.echo.s(i) for i in range(16)], tasks.gather.s(path, f"cb{r}")))
               for r in range(5)]
    for h in handles:
        assert h.result(timeout=30) == list(range(16))
    with open(path) as fh:
        assert sorted(fh.read().split()) == [f"cb{r}" for r in range(5)]


def test_single_signature_and_async_submit() -> None:
    client = anytask.connect("memory://")
    assert client.submit(tasks.add.s(2, 3)).result(timeout=10) == 5

    async def main() -> Any:
        h = await client.asubmit(tasks.add.s(1, 1) | tasks.add.s(1))
        return await h.aresult(timeout=10), await h.astatus()

    import asyncio

    assert asyncio.run(main()) == (3, Status.SUCCEEDED)


def test_a_later_link_keeps_its_delay_from_its_own_submit() -> None:
    import time

    client = anytask.connect("memory://")
    t0 = time.time()
    h = client.submit(tasks.add.s(1, 1) | tasks.add.s(1).using(delay=1.0))
    time.sleep(0.3)
    assert h.links()[1].status is Status.SCHEDULED  # submitted by link 0, waiting for its delay
    assert h.result(timeout=10) == 3
    assert client.get(h.id).started_at - t0 >= 0.95  # type: ignore[operator]


def test_handles_report_a_broken_chain_or_chord_without_waiting() -> None:
    """A link that succeeded is stored after its successor was submitted, so "succeeded, successor
    unknown" means the worker stopped in between: the handles say so at once instead of waiting."""
    from anytask.facade.canvas_handles import ChainHandle, ChordHandle, GroupHandle

    client = anytask.connect("memory://")
    done = client.submit(tasks.add, 1, 1)
    assert done.result(timeout=10) == 2
    never = "0" * 32
    chain = ChainHandle((done.id, never), ("add", "add"), client.backend, client)
    with pytest.raises(TaskFailed) as ei:
        chain.result(timeout=10)
    assert ei.value.exc_type == "anytask.ChainBroken" and ei.value.task_id == never
    assert [r.status for r in chain.links()] == [Status.SUCCEEDED, Status.FAILED]
    chord = ChordHandle(never, "gather", GroupHandle((done.id,), ("add",), client.backend, client),
                        client.backend, client)
    with pytest.raises(TaskFailed) as ei:
        chord.result(timeout=10)
    assert ei.value.exc_type == "anytask.ChordBroken"
