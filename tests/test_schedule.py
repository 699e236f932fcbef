"""anytask.periodic(): the stdlib cron parser, interval fire times, the schedule registry and the beat's
claim logic. The beat against real brokers and workers is in anytask/testing/conformance.py."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import anytask
from anytask.facade.beat import CLAIM_TTL, Beat, claim_key
from anytask.facade.errors import ConfigurationError, InvalidTask, NotSerializable
from anytask.facade.schedule import Cron, Every, Schedule, periodic, registered_schedules, unregister_schedule
from anytask.testing import tasks

UTC = timezone.utc


def t(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def fires(expr: str, start: datetime, n: int) -> list[datetime]:
    c, out, at = Cron(expr), [], start
    for _ in range(n):
        nxt = c.next_after(at)
        assert nxt is not None
        out.append(nxt)
        at = nxt
    return out


# -- the cron dialect ---------------------------------------------------------------------------


def test_steps_ranges_and_lists() -> None:
    assert fires("*/15 * * * *", t(2026, 1, 1, 10, 7), 4) == [t(2026, 1, 1, 10, 15), t(2026, 1, 1, 10, 30),
                                                              t(2026, 1, 1, 10, 45), t(2026, 1, 1, 11, 0)]
    assert fires("5,10-12 3 * * *", t(2026, 1, 1), 5) == [t(2026, 1, 1, 3, 5), t(2026, 1, 1, 3, 10), t(2026, 1, 1, 3, 11),
                                                          t(2026, 1, 1, 3, 12), t(2026, 1, 2, 3, 5)]
    assert fires("0 9-17/4 * * *", t(2026, 1, 1), 3) == [t(2026, 1, 1, 9), t(2026, 1, 1, 13), t(2026, 1, 1, 17)]
    assert Cron("50/5 * * * *").minutes == frozenset({50, 55})  # "a/n": from a to the end


def test_next_is_strictly_after_and_drops_seconds() -> None:
    assert Cron("30 * * * *").next_after(t(2026, 1, 1, 10, 30)) == t(2026, 1, 1, 11, 30)
    assert Cron("* * * * *").next_after(datetime(2026, 1, 1, 10, 30, 59, 999, tzinfo=UTC)) == t(2026, 1, 1, 10, 31)


def test_names_for_months_and_days_and_sunday_as_7() -> None:
    c = Cron("0 0 * JAN,mar-apr mon-fri")
    assert c.months == frozenset({1, 3, 4}) and c.weekdays == frozenset({1, 2, 3, 4, 5})
    assert Cron("0 0 * * 7").weekdays == Cron("0 0 * * sun").weekdays == frozenset({0})
    # 2026-01-03 is a Saturday: the next Monday-to-Friday midnight is Monday the 5th
    assert Cron("0 0 * * mon-fri").next_after(t(2026, 1, 3)) == t(2026, 1, 5)


def test_day_fields_or_when_both_restricted_and_when_one_is_star() -> None:
    # Vixie: both restricted -> either matches (the 13th, or any Friday)
    assert fires("0 0 13 * fri", t(2026, 2, 1), 3) == [t(2026, 2, 6), t(2026, 2, 13), t(2026, 2, 20)]
    # one starts with '*' -> both must match ('*/2' restricts odd days but still means AND)
    assert fires("0 0 */2 * fri", t(2026, 2, 1), 2) == [t(2026, 2, 13), t(2026, 2, 27)]
    assert fires("0 0 1 * *", t(2026, 1, 15), 2) == [t(2026, 2, 1), t(2026, 3, 1)]


def test_month_ends_leap_days_and_macros() -> None:
    assert fires("0 0 31 * *", t(2026, 1, 31, 1), 2) == [t(2026, 3, 31), t(2026, 5, 31)]
    assert Cron("0 0 29 2 *").next_after(t(2026, 1, 1)) == t(2028, 2, 29)
    assert Cron("@hourly").next_after(t(2026, 1, 1, 5, 1)) == t(2026, 1, 1, 6)
    assert Cron("@weekly").next_after(t(2026, 1, 1)) == t(2026, 1, 4)  # Sunday
    assert Cron("@yearly").next_after(t(2026, 6, 1)) == t(2027, 1, 1)


@pytest.mark.parametrize("expr, words", [
    ("* * * *", "5 fields"), ("61 * * * *", "outside 0-59"), ("* 24 * * *", "outside 0-23"),
    ("* * 0 * *", "outside 1-31"), ("* * * 13 *", "outside 1-12"), ("* * * * 8", "outside 0-7"),
    ("*/0 * * * *", "step"), ("5-1 * * * *", "backwards"), ("* * * foo *", "not a number"),
    ("1,,2 * * * *", "empty item"), ("0 0 30 2 *", "matches no date"), ("0 0 31 4,6 *", "matches no date"),
])
def test_bad_expressions_name_the_problem(expr: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        Cron(expr)


def test_agrees_with_croniter_on_random_expressions() -> None:
    croniter = pytest.importorskip("croniter").croniter  # installed with rq; an independent implementation
    rng = random.Random(5)

    def item(lo: int, hi: int) -> str:
        a = rng.randint(lo, hi - 1)  # a-b with b > a: croniter 7 mishandles 'a-a' (e.g. '12-12' months)
        return rng.choice([str(a), f"{a}-{rng.randint(a + 1, hi)}", f"*/{rng.randint(1, 7)}", f"{a}/{rng.randint(1, 5)}"])

    for _ in range(300):
        day_fields = [rng.choice(["*", item(1, 28)]), rng.choice(["*", item(0, 6)])]
        if day_fields[0].startswith("*/") and day_fields[1] != "*":
            day_fields[1] = "*"  # croniter counts '*/n' as a restriction (OR); Vixie cron does not (AND)
        if day_fields[1].startswith("*/") and day_fields[0] != "*":
            day_fields[0] = "*"
        expr = " ".join([",".join(item(0, 59) for _ in range(rng.randint(1, 2))), item(0, 23),
                         day_fields[0], rng.choice(["*", item(1, 12)]), day_fields[1]])
        start = t(2026, 1, 1) + timedelta(minutes=rng.randint(0, 600_000))
        ours = Cron(expr).next_after(start)
        theirs = croniter(expr, start).get_next(datetime)
        assert ours == theirs, f"{expr!r} after {start}: {ours} vs croniter {theirs}"


# -- intervals ----------------------------------------------------------------------------------


def test_intervals_are_aligned_to_the_epoch() -> None:
    e = Every(5)
    assert e.next_fire(1000.0) == 1005.0 and e.next_fire(1001.2) == 1005.0 and e.next_fire(1004.999) == 1005.0
    assert Every(1.5).next_fire(3.0) == 4.5
    for bad in (0, 0.5, -1, float("nan"), float("inf"), True, "5"):
        with pytest.raises(ConfigurationError, match="every="):
            Every(bad)  # type: ignore[arg-type]


# -- declarations -------------------------------------------------------------------------------


@pytest.fixture
def clean_registry() -> Any:
    before = set(registered_schedules())
    yield
    for name in set(registered_schedules()) - before:
        unregister_schedule(name)


def test_periodic_declares_once_by_name(clean_registry: None) -> None:
    s = anytask.periodic(tasks.add, every=timedelta(seconds=30), args=(1, 2), name="unit-add")
    assert isinstance(s, Schedule) and s.when == Every(30) and s.args == (1, 2) and s.module == __name__
    assert registered_schedules()["unit-add"] is s
    assert periodic(tasks.add, every=30, args=[1, 2], name="unit-add").same_as(s)  # the same again: a no-op
    with pytest.raises(ConfigurationError, match="already declared"):
        periodic(tasks.add, every=60, args=(1, 2), name="unit-add")
    c = periodic(tasks.echo, cron="0 * * * *", kwargs={"value": "x"}, name="unit-echo")
    assert c.when == Cron("0 * * * *") and dict(c.kwargs) == {"value": "x"}
    with pytest.raises(TypeError):
        c.kwargs["value"] = "y"  # type: ignore[index]


def test_periodic_takes_a_signature(clean_registry: None) -> None:
    s = periodic(tasks.add.using(queue="q").s(3, 4), every=10, name="unit-sig")
    assert s.task.name == tasks.add.name and s.task.options.queue == "q" and s.args == (3, 4)
    with pytest.raises(ConfigurationError, match="not both"):
        periodic(tasks.add.s(3, 4), every=10, args=(1,), name="unit-sig2")


def test_periodic_refuses_bad_declarations(clean_registry: None) -> None:
    with pytest.raises(ConfigurationError, match="exactly one of"):
        periodic(tasks.add, args=(1, 2))
    with pytest.raises(ConfigurationError, match="exactly one of"):
        periodic(tasks.add, every=5, cron="* * * * *")
    with pytest.raises(InvalidTask, match="not a task"):
        periodic(tasks.add.func, every=5)  # type: ignore[arg-type]
    with pytest.raises(NotSerializable, match="positional argument 0"):
        periodic(tasks.echo, every=5, args=(object(),), name="unit-bad")
    with pytest.raises(ConfigurationError, match="whitespace"):
        periodic(tasks.add, every=5, name="two words")
    assert not {"unit-bad", "two words"} & set(registered_schedules())


# -- the beat's claims (the real thing runs in the conformance suite) ---------------------------


def test_claim_keys_reuse_a_slot_only_after_its_claim_expired() -> None:
    s = Schedule("k", tasks.add, Every(1))
    keys = [claim_key(s, float(f)) for f in range(100_000, 100_000 + 2 * int(CLAIM_TTL) + 1)]
    assert len(set(keys)) == len(keys)  # no reuse within 2 x CLAIM_TTL
    assert claim_key(s, 1e9) != claim_key(Schedule("other", tasks.add, Every(1)), 1e9)


class _Claims:
    """claim_unique's contract (set-if-absent) for the unit test of the beat loop."""

    def __init__(self) -> None:
        self.held: dict[str, str] = {}

    def claim_unique(self, key: str, task_id: str, ttl: float) -> str | None:
        if key in self.held:
            return self.held[key]
        self.held[key] = task_id
        return None


class _Client:
    def __init__(self, claims: _Claims) -> None:
        self.adapter = claims
        self.submitted: list[tuple[str, tuple[Any, ...]]] = []

    def submit(self, task: Any, *args: Any, **kwargs: Any) -> Any:
        self.submitted.append((task.name, args))
        return type("H", (), {"id": f"id{len(self.submitted)}"})()


def test_two_beats_fire_each_time_once_and_skip_missed_fires() -> None:
    now = [1000.2]
    claims = _Claims()
    s = Schedule("b", tasks.add, Every(1), args=(1, 2))
    a_client, b_client = _Client(claims), _Client(claims)
    a = Beat(a_client, [s], clock=lambda: now[0])  # type: ignore[arg-type]
    b = Beat(b_client, [s], clock=lambda: now[0])  # type: ignore[arg-type]
    for _ in range(5):
        now[0] += 1.0
        a.fire_due()
        b.fire_due()
    assert len(a_client.submitted) + len(b_client.submitted) == 5
    assert a.fired == 5 and b.skipped == 5
    now[0] += 1000.0  # a stall far beyond GRACE: skipped, not caught up
    a.fire_due()
    assert a.fired == 5 and a.next["b"] == s.next_fire(now[0])
    now[0] += 1.0
    a.fire_due()
    assert a.fired == 6 and a_client.submitted[-1] == (tasks.add.name, (1, 2))
