"""The survey's claims as data (``scenarios/claims/survey.toml``) and the rules that decide them.

The rules are pure functions of numbers or probe verdicts, written (and parametrised in survey.toml)
before looking at any result; ``verdicts.py`` feeds them the measurements.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIRMED, REFUTED, PARTLY, NOT_COMPARABLE = "confirmed", "refuted", "partly", "not comparable"
VERDICTS = (CONFIRMED, PARTLY, REFUTED, NOT_COMPARABLE)
KINDS = ("throughput", "latency", "resource", "feature", "side")
RULES = ("numeric", "rank", "spread", "lowest", "order", "feature", "probe", "untested")


def default_path() -> Path:
    return Path(__file__).resolve().parents[2] / "scenarios" / "claims" / "survey.toml"


@dataclass(frozen=True)
class Claim:
    id: str
    kind: str
    table: str
    library: str
    section: str
    claimed: str
    rule: str
    row: str = ""
    column: str = ""
    text: str = ""
    scenario: str = ""
    metric: str = ""
    features: tuple[str, ...] = ()
    probe_claim: str = ""
    untested: str = ""

    @property
    def libraries(self) -> list[str]:
        return [x.strip() for x in self.library.split(",") if x.strip()]

    @property
    def label(self) -> str:
        """The claim in the survey's words."""
        if self.text:
            return self.text
        return f"{self.row} / {self.column}: {self.claimed}"


@dataclass(frozen=True)
class Claims:
    survey: dict[str, Any]
    backends: dict[str, list[str]]
    selection: dict[str, Any]
    metrics: dict[str, str]
    rules: dict[str, Any]
    claims: tuple[Claim, ...]
    source: str = ""

    def of_kind(self, kind: str) -> list[Claim]:
        return [c for c in self.claims if c.kind == kind]

    def by_id(self) -> dict[str, Claim]:
        return {c.id: c for c in self.claims}


def load(path: str | Path | None = None) -> Claims:
    p = Path(path) if path else default_path()
    with open(p, "rb") as fh:
        doc = tomllib.load(fh)
    problems = validate(doc)
    if problems:
        raise ValueError(f"{p}: " + "; ".join(problems))
    claims = []
    for c in doc["claim"]:
        kw = dict(c)
        kw["features"] = tuple(kw.get("features", ()))
        claims.append(Claim(**kw))
    return Claims(survey=doc.get("survey", {}), backends=doc.get("backends", {}),
                  selection=doc.get("selection", {}), metrics=doc.get("metrics", {}), rules=doc.get("rules", {}),
                  claims=tuple(claims), source=str(p))


def validate(doc: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    known = set(Claim.__dataclass_fields__)
    seen: set[str] = set()
    for i, c in enumerate(doc.get("claim", [])):
        where = f"claim[{i}] {c.get('id', '?')}"
        for k in ("id", "kind", "table", "library", "section", "claimed", "rule"):
            if k not in c:
                problems.append(f"{where}: missing {k}")
        extra = set(c) - known
        if extra:
            problems.append(f"{where}: unknown keys {sorted(extra)}")
        if c.get("id") in seen:
            problems.append(f"{where}: duplicate id")
        seen.add(c.get("id", ""))
        if c.get("kind") not in KINDS:
            problems.append(f"{where}: kind {c.get('kind')!r}")
        rule = c.get("rule")
        if rule not in RULES:
            problems.append(f"{where}: rule {rule!r}")
        if rule in ("numeric", "rank", "spread", "lowest", "order") and not (c.get("scenario") and c.get("metric")):
            problems.append(f"{where}: rule {rule} needs scenario and metric")
        if rule == "feature" and not c.get("features"):
            problems.append(f"{where}: rule feature needs features")
        if rule == "probe" and not c.get("probe_claim"):
            problems.append(f"{where}: rule probe needs probe_claim")
        if rule == "numeric" and c.get("claimed") is not None:
            try:
                parse_claimed(str(c["claimed"]))
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
    return problems


# ------------------------------------------------------------------------------------------- rules
_NUM = r"(\d+(?:\.\d+)?)"


def parse_claimed(text: str) -> tuple[float, float]:
    """``"1000+"`` -> (1000, inf); ``"500-800"`` / ``"10-50ms"`` -> (500, 800); ``"800"`` -> (800, 800)."""
    t = text.strip().lower().replace(",", "").replace(" ", "")
    t = re.sub(r"(ms|tasks/s|/s)$", "", t)
    m = re.fullmatch(_NUM + r"\+", t)
    if m:
        return float(m.group(1)), math.inf
    m = re.fullmatch(_NUM + r"[-–]" + _NUM, t)
    if m:
        lo, hi = float(m.group(1)), float(m.group(2))
        return min(lo, hi), max(lo, hi)
    m = re.fullmatch(_NUM, t)
    if m:
        return float(m.group(1)), float(m.group(1))
    raise ValueError(f"cannot read a number, minimum or range from {text!r}")


def fmt(x: float | None, digits: int = 3) -> str:
    """A number for prose: `digits` significant digits, thousands separated, no exponent above 1e-4."""
    if x is None:
        return "n/a"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x == 0:
        return "0"
    if abs(x) >= 10 ** digits:
        return f"{x:,.0f}"
    s = format(x, f"#.{digits}g")
    if "e" in s:
        return f"{x:.{digits - 1}e}"
    return s.rstrip(".")


@dataclass(frozen=True)
class Decision:
    verdict: str
    reason: str
    deviation: float = 0.0  # how far from the claim (log-ratio for numbers, 1 - score for ranks): sorts surprises
    detail: dict[str, Any] = field(default_factory=dict)


def decide_numeric(claimed: str, value: float | None, higher_is_better: bool, tolerance: float,
                   unit: str = "") -> Decision:
    if value is None:
        return Decision(NOT_COMPARABLE, "not measured in this run")
    lo, hi = parse_claimed(claimed)
    lo_ok, hi_ok = lo * (1 - tolerance), hi * (1 + tolerance)
    window = (f"the accepted range [{fmt(lo_ok)}, {fmt(hi_ok)}]{unit}" if not math.isinf(hi)
              else f"the accepted minimum {fmt(lo_ok)}{unit}")
    if lo_ok <= value <= hi_ok:
        return Decision(CONFIRMED, f"{fmt(value)}{unit} meets {window} (claim ±{tolerance:.0%})",
                        0.0, {"low": lo_ok, "high": hi_ok})
    below = value < lo_ok
    ratio = value / lo if below else value / hi
    dev = abs(math.log(ratio)) if ratio > 0 else math.inf
    better = (not below) == higher_is_better
    side = "above" if not below else "below"
    times = f"{fmt(ratio, 2)}× the claimed {'minimum' if below else 'maximum'}" if lo != hi else \
        f"{fmt(ratio, 2)}× the claimed value"
    if better:
        return Decision(PARTLY, f"{fmt(value)}{unit} is {side} {window}, {times}: better than claimed, the survey "
                                "understates it", dev, {"low": lo_ok, "high": hi_ok})
    return Decision(REFUTED, f"{fmt(value)}{unit} is {side} {window}, {times}: worse than claimed", dev,
                    {"low": lo_ok, "high": hi_ok})


def decide_rank(library: str, claimed: dict[str, str], values: dict[str, float], params: dict[str, Any]) -> Decision:
    levels: dict[str, float] = params["levels"]
    tie, same = float(params["tie"]), float(params["same"])
    if library not in values:
        return Decision(NOT_COMPARABLE, "not measured in this run")
    if claimed[library] not in levels:
        return Decision(NOT_COMPARABLE, f"the level {claimed[library]!r} is not on the Very Low…High scale")
    others = [k for k in sorted(values) if k != library and k in claimed and claimed[k] in levels]
    if len(others) < int(params.get("min_others", 2)):
        return Decision(NOT_COMPARABLE, f"only {len(others)} other librar{'y' if len(others) == 1 else 'ies'} "
                                        "measured; a rank needs at least " + str(params.get("min_others", 2)))
    mine, lv = values[library], levels[claimed[library]]
    score, parts = 0.0, []
    for k in others:
        theirs, lk = values[k], levels[claimed[k]]
        ratio = mine / theirs if theirs else math.inf
        if lv == lk:
            ok = 1.0 if (1 / (1 + same)) <= ratio <= (1 + same) else 0.0
            parts.append(f"{k} (claimed same level): ×{fmt(ratio, 2)} {'✓' if ok else '✗'}")
        else:
            expect_higher = lv > lk
            if abs(ratio - 1) <= tie:
                ok = 0.5
            else:
                ok = 1.0 if (ratio > 1) == expect_higher else 0.0
            parts.append(f"{k} (claimed {'lower' if expect_higher else 'higher'}): ×{fmt(ratio, 2)} "
                         f"{'✓' if ok == 1 else ('≈' if ok == 0.5 else '✗')}")
        score += ok
    score /= len(others)
    verdict = CONFIRMED if score >= params["confirmed"] else PARTLY if score >= params["partly"] else REFUTED
    return Decision(verdict, f"rank agreement {score:.0%} with {len(others)} other libraries: " + "; ".join(parts),
                    1 - score, {"score": score})


def decide_spread(values: dict[str, float], params: dict[str, Any]) -> Decision:
    vals = {k: v for k, v in values.items() if v and v > 0}
    if len(vals) < 2:
        return Decision(NOT_COMPARABLE, f"only {len(vals)} broker measured for this library; a spread needs two")
    hi_k = max(vals, key=lambda k: vals[k])
    lo_k = min(vals, key=lambda k: vals[k])
    ratio = vals[hi_k] / vals[lo_k]
    verdict = CONFIRMED if ratio >= params["confirmed"] else PARTLY if ratio >= params["partly"] else REFUTED
    return Decision(verdict, f"{hi_k} / {lo_k} = ×{fmt(ratio, 2)} (confirmed from ×{params['confirmed']}, partly "
                             f"from ×{params['partly']})", abs(math.log(ratio / params["confirmed"])), {"ratio": ratio})


def decide_lowest(library: str, values: dict[str, float], params: dict[str, Any]) -> Decision:
    if library not in values:
        return Decision(NOT_COMPARABLE, "not measured in this run")
    if len(values) < int(params.get("min_libraries", 3)):
        return Decision(NOT_COMPARABLE, f"only {len(values)} libraries measured; needs "
                                        f"{params.get('min_libraries', 3)}")
    tie = float(params.get("tie", 0.10))
    mine = values[library]
    others = {k: v for k, v in values.items() if k != library}
    lower = sorted(k for k, v in others.items() if v < mine / (1 + tie))
    tied = sorted(k for k, v in others.items() if k not in lower and v <= mine * (1 + tie))
    listing = ", ".join(f"{k} {fmt(values[k])}" for k in sorted(values, key=lambda k: (values[k], k)))
    if not lower and not tied:
        return Decision(CONFIRMED, f"lowest of {len(values)} libraries ({listing})", 0.0)
    if not lower:
        return Decision(PARTLY, f"tied for lowest (within {tie:.0%}) with {', '.join(tied)} ({listing})", 0.5)
    if len(lower) == 1:
        return Decision(PARTLY, f"second lowest of {len(values)} libraries, above {lower[0]} ({listing})", 0.5)
    return Decision(REFUTED, f"{len(lower)} of {len(values) - 1} other libraries are lower ({listing})",
                    len(lower) / (len(values) - 1))


def decide_order(expected: list[str], values: dict[str, float], higher_first: bool) -> Decision:
    missing = [k for k in expected if k not in values]
    if missing:
        return Decision(NOT_COMPARABLE, f"not measured in this run: {', '.join(missing)}")
    measured = sorted(expected, key=lambda k: (-values[k] if higher_first else values[k], k))
    pairs = [(a, b) for i, a in enumerate(expected) for b in expected[i + 1:]]
    agree = sum(1 for a, b in pairs if measured.index(a) < measured.index(b))
    listing = " > ".join(f"{k} ({fmt(values[k])})" for k in measured)
    if measured == expected:
        return Decision(CONFIRMED, f"measured order {listing}", 0.0)
    if measured[0] == expected[0] or agree * 2 >= len(pairs):
        return Decision(PARTLY, f"measured order {listing}; {agree}/{len(pairs)} pairs as claimed",
                        1 - agree / len(pairs))
    return Decision(REFUTED, f"measured order {listing}; {agree}/{len(pairs)} pairs as claimed",
                    1 - agree / len(pairs))


def decide_feature(claimed: str, probe_verdicts: dict[str, str], params: dict[str, Any],
                   words: dict[str, str] | None = None) -> Decision:
    values: dict[str, int] = params["values"]
    words = words or {"Simple": "yes", "Medium": "partial", "Complex": "no"}
    want = words.get(claimed, claimed)
    if want not in values:
        return Decision(NOT_COMPARABLE, f"cannot read the survey cell {claimed!r}")
    if not probe_verdicts:
        return Decision(NOT_COMPARABLE, "no probe result in features.json")
    per: list[str] = []
    reasons: list[str] = []
    for feat, got in sorted(probe_verdicts.items()):
        if got not in values:
            per.append(NOT_COMPARABLE)
            reasons.append(f"{feat}: probe {got}")
            continue
        gap = abs(values[got] - values[want])  # yes 2, partial/plugin 1, no 0
        v = CONFIRMED if gap == 0 else PARTLY if gap == 1 else REFUTED
        per.append(v)
        reasons.append(f"{feat}: probe {got}")
    claimed_txt = f"survey {claimed}" + (f" (= {want})" if want != claimed else "")
    if NOT_COMPARABLE in per:
        return Decision(NOT_COMPARABLE, f"{claimed_txt}; " + ", ".join(reasons) + " (undecided probe)")
    if all(v == CONFIRMED for v in per):
        verdict = CONFIRMED
    elif all(v == REFUTED for v in per):
        verdict = REFUTED
    else:
        verdict = PARTLY
    dev = {CONFIRMED: 0.0, PARTLY: 0.5, REFUTED: 1.0}[verdict]
    return Decision(verdict, f"{claimed_txt}; " + ", ".join(reasons), dev)


def decide_probe(holds: bool | None, evidence: str) -> Decision:
    if holds is None:
        return Decision(NOT_COMPARABLE, f"the probe could not decide: {evidence}")
    return Decision(CONFIRMED if holds else REFUTED, evidence, 0.0 if holds else 1.0)
