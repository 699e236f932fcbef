"""``anytask bench merge SRC --into DIR``: add the records of a later run to a run directory.

The soak (and any scenario re-measured later) can be run on its own and added to the reference run
afterwards instead of re-running everything (docs/run-json.md, "Merged runs"). What is merged:

* ``results``: every record of SRC's run.json, for the scenarios SRC has records of. DIR's records
  of those scenarios are dropped first, so a scenario's records always come from one run (its
  backends measured under the same conditions) and merging the same SRC twice changes nothing;
* ``raw/``: the raw files SRC's merged records name (when SRC has them); raw files of DIR's dropped
  records that no remaining record names are removed;
* ``configs``: the keys DIR lacks (DIR's own keys are kept);
* ``not_run``, ``summary``, and the ``session_seconds`` of own-session scenarios (labels
  ``"<scenario> <backend> <config> <mode>"``): SRC's entries for the merged scenarios replace DIR's;
  the timers of SRC's regular sessions (``"r1 ..."``, not attributable to one scenario) are kept in
  the provenance entry;
* ``merged``: one provenance entry per source run (``run_id``, ``profile``, ``started``, ``finished``,
  ``scenarios``, ``records``, SRC's ``environment``, ``why``; no time of the merge itself, so that
  merging again writes the same file). A later merge of the same scenarios takes them out of earlier
  entries; an entry left without scenarios is dropped.

DIR keeps its own ``started`` / ``finished``, ``profile``, ``run_id`` and ``environment``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Any

from .results import SCHEMA_VERSION, validate


class MergeError(Exception):
    """The merge is refused: the message names the problem and what to do."""


@dataclass
class MergeResult:
    scenarios: list[str]
    added: int  # records added from SRC
    replaced: int  # DIR records dropped (same scenarios)
    raw_copied: int
    raw_missing: list[str] = field(default_factory=list)  # named by a record, absent from SRC
    raw_removed: int = 0  # DIR raw files of dropped records
    configs_added: int = 0
    configs_differing: list[str] = field(default_factory=list)  # keys both have, with other content
    path: str = ""


def _read(directory: str, role: str) -> dict[str, Any]:
    path = os.path.join(directory, "run.json")
    if not os.path.isfile(path):
        raise MergeError(f"{role} {directory}: no run.json there (give the directory 'anytask bench run --out' "
                         "wrote)")
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:
        raise MergeError(f"{role} {path}: cannot be read as JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise MergeError(f"{role} {path}: not a run.json document (a JSON object is expected)")
    return doc


def _scenarios(records: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(str(r.get("scenario")) for r in records))


def _own_label(label: str, scenarios: set[str]) -> bool:
    """An own-session timer ("soak rq+redis defaults facade") of one of ``scenarios`` (a regular
    session's label starts with its repeat, "r1 rq+redis tuned native", never a scenario name)."""
    return label.split(" ", 1)[0] in scenarios


def merge(src_dir: str, into: str, why: str) -> MergeResult:
    """Merge ``src_dir``'s run.json (and raw files) into ``into``'s; raises :class:`MergeError`."""
    if not why.strip():
        raise MergeError("say why these records are merged: --note \"...\" (it is kept in run.json 'merged' "
                         "and shown in the report)")
    if os.path.abspath(src_dir) == os.path.abspath(into):
        raise MergeError(f"SRC and --into are the same directory ({src_dir}): give the directory of the other run")
    src, dst = _read(src_dir, "SRC"), _read(into, "--into")
    if src.get("schema") != dst.get("schema"):
        raise MergeError(f"schema differs: SRC {src_dir} has schema {src.get('schema')!r}, {into} has "
                         f"{dst.get('schema')!r} (this anytask writes {SCHEMA_VERSION}); re-run the SRC scenarios "
                         "with this version of anytask (anytask bench run --scenarios ...) and merge that run")
    for role, d, doc in (("SRC", src_dir, src), ("--into", into, dst)):
        problems = validate(doc)
        if problems:
            raise MergeError(f"{role} {d}/run.json does not follow docs/run-json.md: {'; '.join(problems[:3])}"
                             + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""))
    records = [dict(r) for r in src.get("results") or []]
    if not records:
        raise MergeError(f"SRC {src_dir} ran no scenario: its run.json has no records (results is empty; an "
                         "interrupted run before its first measurement?). Nothing to merge")
    if src.get("run_id") and src.get("run_id") == dst.get("run_id"):
        raise MergeError(f"SRC {src_dir} is run {src.get('run_id')}, the run of {into} itself: nothing to merge")
    names = _scenarios(records)
    merged = set(names)

    kept = [r for r in dst.get("results") or [] if r.get("scenario") not in merged]
    dropped = [r for r in dst.get("results") or [] if r.get("scenario") in merged]
    out = dict(dst)
    out["results"] = kept + records

    # raw files: SRC's of the merged records; DIR's of the dropped ones that nothing names any more
    copied, missing = 0, []
    for r in records:
        rel = r.get("raw")
        if not rel:
            continue
        s, d = os.path.join(src_dir, rel), os.path.join(into, rel)
        if os.path.isfile(s):
            os.makedirs(os.path.dirname(d), exist_ok=True)
            shutil.copyfile(s, d)
            copied += 1
        else:
            missing.append(rel)
    still = {r.get("raw") for r in out["results"] if r.get("raw")}
    removed = 0
    for r in dropped:
        rel = r.get("raw")
        p = os.path.join(into, rel) if rel else ""
        if rel and rel not in still and os.path.isfile(p):
            os.remove(p)
            removed += 1

    configs = dict(dst.get("configs") or {})
    added = differing = 0
    diff_keys = []
    for k, v in (src.get("configs") or {}).items():
        if k not in configs:
            configs[k] = v
            added += 1
        elif configs[k] != v:
            differing += 1
            diff_keys.append(k)
    out["configs"] = configs

    out["not_run"] = [n for n in dst.get("not_run") or [] if n.get("scenario") not in merged] + \
        [n for n in src.get("not_run") or [] if n.get("scenario") in merged]
    if "summary" in dst or "summary" in src:
        src_rows = [row for row in src.get("summary") or [] if row.get("scenario") in merged]
        rows = [row for row in dst.get("summary") or [] if row.get("scenario") not in merged] + src_rows
        out["summary"] = sorted(rows, key=lambda r: (str(r.get("scenario")), str(r.get("backend")),
                                                     str(r.get("config")), int(r.get("workers") or 1),
                                                     str(r.get("mode"))))
    own_secs = {k: v for k, v in (src.get("session_seconds") or {}).items() if _own_label(k, merged)}
    if own_secs or "session_seconds" in dst:
        secs = {k: v for k, v in (dst.get("session_seconds") or {}).items() if not _own_label(k, merged)}
        out["session_seconds"] = {**secs, **own_secs}

    entry: dict[str, Any] = {"run_id": src.get("run_id"), "profile": src.get("profile"),
                             "started": src.get("started"), "finished": src.get("finished"), "scenarios": names,
                             "records": len(records), "environment": src.get("environment") or {}, "why": why}
    if src.get("interrupted"):
        entry["interrupted"] = True
    regular_secs = {k: v for k, v in (src.get("session_seconds") or {}).items() if k not in own_secs}
    if regular_secs:
        entry["session_seconds"] = regular_secs
    if src.get("session_phases"):
        entry["session_phases"] = src["session_phases"]
    history = []
    for e in dst.get("merged") or []:
        if e.get("run_id") == entry["run_id"]:
            continue  # merged again: the new entry replaces it
        left = [s for s in e.get("scenarios") or [] if s not in merged]
        if left:
            history.append({**e, "scenarios": left})
    out["merged"] = [*history, entry]

    path = os.path.join(into, "run.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(out, fh, indent=1, default=str)
    os.replace(tmp, path)
    return MergeResult(names, len(records), len(dropped), copied, missing, removed, added, diff_keys, path)
