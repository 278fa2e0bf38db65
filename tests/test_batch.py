"""Batch replay: the hand-computed example and the replay's bookkeeping."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.batch import Replay
from streams.core.events import InvalidEvent
from streams.core.plan import ScoringPlan
from tests.factories import event


def _lines(events: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(e) for e in events]


def _by_key(records: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {(r["level"], r["unit"], r["service"], r["touchpoint"], r["kpi"]): r for r in records}


def hand_example() -> list[dict[str, Any]]:
    install = {"status": "completed", "kind": "install", "first_time_right": True}
    first = event("install", on_time=True, delay_hours=0, **install)
    return [
        # HPG mobile install: 4 completed installs, 3 on time -> on_time = 3/4 = 0.75
        #   points on [[0.5,1],[1,5]]: 1 + 4 * (0.75 - 0.5) / 0.5 = 3.0
        # delay mean (0 + 2 + 8 + 2) / 4 = 3.0 h -> on [[0,5],[10,1]]: 5 - 4 * 0.3 = 3.8
        # install touchpoint (weights 3, 1): (3 * 3.0 + 1 * 3.8) / 4 = 3.2
        first,
        event("install", on_time=True, delay_hours=2, **install),
        event("install", on_time=False, delay_hours=8, **install),
        event("install", on_time=True, delay_hours=2.0, **install),
        event("install", kind="install", status="failed"),  # not completed: not counted
        dict(first),  # a duplicate (same event_id): counted once
        # care NPS: answers 10, 9 (promoters), 3 (detractor), 7 (passive): 100 * (2 - 1) / 4 = 25
        #   points on [[-100,1],[100,5]]: 1 + 4 * 125 / 200 = 3.5
        event("survey", touchpoint="care", nps=10),
        event("survey", touchpoint="care", nps=9, csat=5),
        event("survey", touchpoint="care", nps=3),
        event("survey", touchpoint="care", nps=7),
        event("survey", touchpoint="install", nps=0),  # another touchpoint: not in care NPS
        # churn: 1 completed cancellation per 2,000 subscribers = 0.5 per 1,000
        #   points on [[0,5],[10,1]]: 5 - 4 * 0.05 = 4.8; care = (3.5 + 4.8) / 2 = 4.15
        event("subscriber_base", "2026-11-01 00:00", active_subscribers=2000),
        event("cancellation", status="completed", reason="price"),
        event("cancellation", status="requested", reason="price"),  # not completed
        # mobile (touchpoint weights 2, 1): (2 * 3.2 + 1 * 4.15) / 3 = 10.55 / 3 = 3.51666...
        # mytv has no event: its only KPI has denominator 0, so repair and mytv are excluded
        #   and HPG = mobile = 3.51666... with coverage 3 / (3 + 1) = 0.75 -> class good
        # QBH: one on-time install with no delay -> on_time 1.0 -> 5, delay 0 h -> 5, install 5;
        #   care has no NPS answer and no subscriber base -> excluded; mobile = 5 with
        #   coverage 2/3; QBH = 5 -> excellent. Network = (3.51666... + 5) / 2 = 4.258333...
        event("install", unit="QBH", on_time=True, delay_hours=0, **install),
    ]


def test_hand_computed_example_matches_to_1e_9(small_plan: ScoringPlan) -> None:
    replay = Replay(small_plan)
    replay.add_lines([*_lines(hand_example()), b"{not json", b'{"type": "order"}'])
    records = _by_key(replay.records("month"))
    approx = lambda x: pytest.approx(x, abs=1e-9)  # noqa: E731

    on_time = records[("kpi", "HPG", "mobile", "install", "on_time")]
    assert (on_time["value"], on_time["numerator"], on_time["denominator"]) == (0.75, 3, 4)
    assert on_time["score"] == approx(3.0)
    assert on_time["target_ratio"] == approx(0.75 / 0.9)
    assert records[("kpi", "HPG", "mobile", "install", "delay")]["score"] == approx(3.8)
    assert records[("touchpoint", "HPG", "mobile", "install", None)]["score"] == approx(3.2)
    nps = records[("kpi", "HPG", "mobile", "care", "nps")]
    assert (nps["value"], nps["numerator"], nps["denominator"]) == (25.0, 1, 4)
    assert nps["score"] == approx(3.5)
    churn = records[("kpi", "HPG", "mobile", "care", "churn")]
    assert (churn["value"], churn["numerator"], churn["denominator"]) == (0.5, 1, 2000)
    assert churn["score"] == approx(4.8)
    assert records[("touchpoint", "HPG", "mobile", "care", None)]["score"] == approx(4.15)

    mobile = records[("service", "HPG", "mobile", None, None)]
    assert mobile["score"] == approx(10.55 / 3)
    assert mobile["target_ratio"] == approx(10.55 / 3 / 4.0)
    assert records[("service", "HPG", "mytv", None, None)]["score"] is None
    assert records[("kpi", "HPG", "mytv", "repair", "sla")]["denominator"] == 0

    hpg = records[("unit", "HPG", None, None, None)]
    assert hpg["score"] == approx(10.55 / 3)
    assert hpg["coverage"] == approx(0.75)
    assert hpg["class"] == "good"
    qbh = records[("unit", "QBH", None, None, None)]
    assert (qbh["score"], qbh["class"]) == (approx(5.0), "excellent")
    assert records[("service", "QBH", "mobile", None, None)]["coverage"] == approx(2 / 3)
    assert records[("touchpoint", "QBH", "mobile", "care", None)]["score"] is None

    network = records[("network", None, None, None, None)]
    assert network["score"] == approx((10.55 / 3 + 5) / 2)
    assert hpg["delta_network"] == approx(10.55 / 3 - (10.55 / 3 + 5) / 2)
    # Touchpoints compare with the plain mean across units: 3.2 - (3.2 + 5) / 2
    install_tp = records[("touchpoint", "HPG", "mobile", "install", None)]
    assert install_tp["delta_network"] == approx(-0.9)
    assert {r["window_start"] for r in records.values()} == {"2026-11-01T00:00:00+07:00"}
    assert {r["catalog_version"] for r in records.values()} == {"test-1"}
    assert (replay.stats.scored, replay.stats.duplicates, replay.stats.rejected) == (14, 1, 2)


def test_rejected_lines_are_reported_with_line_number_and_reason(small_plan: ScoringPlan) -> None:
    seen: list[tuple[int, str]] = []
    replay = Replay(small_plan)
    good = orjson.dumps(event("install", kind="install", status="completed"))
    lines = [good, b"[1, 2]", b"", b'{"type": "install"}', b"\xff\xfe"]

    def on_reject(lineno: int, error: InvalidEvent) -> None:
        seen.append((lineno, error.code))

    replay.add_lines(lines, on_reject)
    assert seen == [(2, "not_an_object"), (4, "missing_field"), (5, "malformed")]
    assert replay.stats.scored == 1


def test_day_windows_carry_delta_to_the_previous_day(small_plan: ScoringPlan) -> None:
    install = {"kind": "install", "status": "completed", "delay_hours": 0}
    events = [
        event("install", "2026-11-05 09:00", on_time=True, **install),
        event("install", "2026-11-06 09:00", on_time=False, **install),
        event("install", "2026-11-06 10:00", on_time=True, **install),
    ]
    replay = Replay(small_plan)
    replay.add_lines(_lines(events))
    records = replay.records("day")
    on_time = [r for r in records if r["kpi"] == "on_time"]
    assert [r["window_start"] for r in on_time] == [
        "2026-11-05T00:00:00+07:00",
        "2026-11-06T00:00:00+07:00",
    ]
    # Day 1: 1/1 -> 5 points; day 2: 1/2 = 0.5 -> 1 point; delta = 1 - 5 = -4
    assert [r["score"] for r in on_time] == [5.0, 1.0]
    assert on_time[0]["delta_prev"] is None
    assert on_time[1]["delta_prev"] == pytest.approx(-4.0)


def test_same_input_gives_byte_identical_output(default_plan: ScoringPlan) -> None:
    from streams.batch import dump_records
    from streams.tools.simulate.generator import Generator

    lines = _lines(list(Generator(seed=3).events(3000)))
    outputs = []
    for _ in range(2):
        replay = Replay(default_plan)
        replay.add_lines(lines)
        outputs.append(b"".join(dump_records(replay.records("day"))))
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) > 0
