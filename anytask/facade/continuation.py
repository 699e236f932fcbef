"""Worker side of the canvas emulation: what runs after a task carrying a continuation succeeded.

``execution.call`` removes the continuation (``canvas.CANVAS_KWARG``) from the kwargs, runs the
task, and -- only after it returned a JSON result -- calls :func:`after_success`, still inside the
task, before the library stores the success. So a link's SUCCEEDED is never visible before the
next link (or a chord's callback) is recorded, which lets the handles tell "not yet" from "broken"
without timing. A continuation that cannot be submitted fails the task with the reason.

Chain: submit the next link with the result prepended (it carries the rest of the chain).
Chord: each member takes the next free completion slot ``1..N`` with ``claim_unique`` (atomic SET
NX on every backend); the member that takes slot N finished last, reads the other members' results
(each already returned; its final state is at most one write away) and submits the callback with
them in member order. Slot N is taken once, so the callback is submitted at most once.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from . import canvas
from .adapter import Adapter
from .backends import load_adapter_class, spec_for
from .capabilities import Feature, FeatureSupport, emulated
from .errors import AnytaskError, ConfigurationError
from .records import Message
from .state import DEFAULT_TTL
from .status import Status
from .task import get_task
from .url import parse_url

# ``anytask worker`` sets it (Adapter.run_worker -> serve_canvas) so that every worker process,
# forked, spawned or exec'ed, can submit continuations through its own backend.
ENV_WORKER_URL = "ANYTASK_WORKER_URL"
GATHER_TIMEOUT = 60.0  # how long the last chord member waits for another member's final write

_CANVAS_HOW = {
    Feature.CHAIN: (
        "the rest of the chain travels with each message (a reserved keyword argument); after a link "
        "succeeds, anytask's worker wrapper submits the next link through this backend with the result "
        "prepended, before the link's success is stored. Weaker than a broker-side chain: a worker that "
        "dies between a link's success and that submit stops the chain there (ChainHandle reports the "
        "chain broken); a link delivered twice submits its successor twice under the same id"),
    Feature.GROUP: (
        "members are enqueued one by one under facade ids and GroupHandle gathers their results in "
        "order; not atomic: if the broker fails midway the members already enqueued stay (the error "
        "lists their ids)"),
    Feature.CHORD: (
        "group members carry the callback; each member, after succeeding, takes the next completion "
        "slot with claim_unique (atomic SET NX); the one taking slot N reads the other results and "
        "submits the callback once. Weaker: if that worker dies before submitting, the callback never "
        "runs (ChordHandle reports it); a failed member means no callback (as Celery's chord)"),
}


def emulated_canvas(notes: dict[Feature, str] | None = None) -> dict[Feature, FeatureSupport]:
    """The CHAIN/GROUP/CHORD declarations of this emulation, with a backend's own ``notes`` appended
    (why the library's native mechanism is not used, what its delivery guarantee adds)."""
    notes = notes or {}
    return {f: emulated(how + (f"; {notes[f]}" if f in notes else "")) for f, how in _CANVAS_HOW.items()}


_adapters: dict[tuple[int, str], Adapter] = {}
_lock = threading.Lock()


class ContinuationError(AnytaskError):
    """A chain's next link or a chord's callback could not be submitted."""


def serve_canvas(url_raw: str) -> None:
    """Called by each adapter's ``run_worker``: continuations go back through this backend URL."""
    os.environ[ENV_WORKER_URL] = url_raw


def worker_adapter(given: Adapter | None) -> Adapter:
    """The adapter that submits continuations: the task context's (memory://), else one per process."""
    if given is not None:
        return given
    raw = os.environ.get(ENV_WORKER_URL)
    if not raw:
        raise ConfigurationError(f"a chain/chord continuation reached a worker that does not know its backend: "
                                 f"start workers with 'anytask worker URL' (it sets {ENV_WORKER_URL})")
    key = (os.getpid(), raw)  # never share connections across a fork
    with _lock:
        if key not in _adapters:
            url = parse_url(raw)
            _adapters[key] = load_adapter_class(spec_for(url))(url)
        return _adapters[key]


def split(kwargs: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The task's own kwargs (a copy: a retry must still carry the continuation) and the continuation."""
    kw = dict(kwargs or {})
    cont = kw.pop(canvas.CANVAS_KWARG, None)
    return kw, cont


def after_success(adapter: Adapter | None, task_id: str, cont: dict[str, Any], value: Any) -> None:
    """Run the continuation of a task that returned ``value`` (called inside the task)."""
    try:
        backend = worker_adapter(adapter)
        if cont.get("next"):
            first, *rest = cont["next"]
            submit_link(backend, first, (value,), {"next": rest} if rest else None)
        if cont.get("chord"):
            _chord_member_done(backend, task_id, cont["chord"], value)
    except ContinuationError:
        raise
    except Exception as exc:  # noqa: BLE001 - the task succeeded; say that its continuation did not
        raise ContinuationError(f"task {task_id} succeeded but its continuation could not be submitted: "
                                f"{type(exc).__name__}: {exc}") from exc


def submit_link(backend: Adapter, link: dict[str, Any], prepend: tuple[Any, ...], cont: dict[str, Any] | None) -> None:
    """Submit a link chosen at client submit time, under its pre-assigned id."""
    task = get_task(link["task"]).using(**canvas.decode_options(link["options"]))
    kwargs = dict(link["kwargs"])
    if cont:
        kwargs[canvas.CANVAS_KWARG] = cont
    eta = canvas.eta_of(task.options)
    msg = Message(id=link["id"], task_name=task.name, args=(*prepend, *link["args"]), kwargs=kwargs,
                  queue=task.options.queue, options={"eta": eta} if eta is not None else {})
    backend.submit(task, msg)


def _claim_slot(backend: Adapter, chord_id: str, member_id: str, size: int) -> int:
    """The completion order of this member, 1..size (size+1.. for a member that ran twice).

    A member re-run after its earlier run took a slot gets that same slot back, so a redelivered
    last member still submits the callback its first run may not have submitted."""
    k = 1
    while True:
        holder = backend.claim_unique(f"anytask:chord:{chord_id}:{k}", member_id, DEFAULT_TTL)
        if holder is None or holder == member_id:
            return k
        k += 1


def _chord_member_done(backend: Adapter, task_id: str, chord: dict[str, Any], value: Any) -> None:
    members: list[str] = chord["members"]
    member_id = members[chord["index"]] if "index" in chord else task_id  # the id chosen at submit
    if _claim_slot(backend, chord["id"], member_id, len(members)) != len(members):
        return
    callback = chord["callback"]
    if backend.get(callback["id"]).status is not Status.UNKNOWN:
        return  # a redelivered last member: the first run submitted it
    values = []
    for i, mid in enumerate(members):
        if mid == member_id:
            values.append(value)
            continue
        res = backend.wait(mid, GATHER_TIMEOUT)
        if res.status is not Status.SUCCEEDED:
            raise ContinuationError(f"chord {chord['id']}: member {i} ({mid}) is {res.status.value}, so the "
                                    f"callback {callback['task']} ({callback['id']}) is not submitted")
        values.append(res.value)
    submit_link(backend, callback, (values,), None)
