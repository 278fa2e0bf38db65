"""Targets by the KPI's direction, and rates that mean the same in every window (hand-worked
against the default catalog's scales)."""

from __future__ import annotations

import pytest
from pytest import approx

from streams.core.plan import KpiDef, ScoringPlan
from streams.core.records import kpi_target
from streams.core.rollup import kpi_value
from streams.core.windows import LocalCalendar
from tests.factories import local_ms

DAY_MS = 86_400_000


def kpi(plan: ScoringPlan, name: str) -> KpiDef:
    return next(k for k in plan.kpis if k.kpi == name)


def test_a_lower_is_better_ratio_reads_target_over_value(default_plan: ScoringPlan) -> None:
    # bill_dispute_ratio: scale [[0.002, 5], [0.01, 3], [0.03, 1]] (points fall), target 0.005
    dispute = kpi(default_plan, "bill_dispute_ratio")
    assert dispute.scale.lower_is_better
    # 0.0286 disputes against 0.005: 0.005 / 0.0286 = 0.1748 (not 5.72 "complete")
    ratio, met, gap = kpi_target(dispute, 0.0286, dispute.scale(0.0286))
    assert ratio == approx(0.005 / 0.0286) == approx(0.174825, abs=1e-6)
    assert met is False
    # points(0.0286) = 3 - 2 * (0.0186 / 0.02) = 1.14; points(0.005) = 5 - 2 * 0.003/0.008 = 4.25
    assert gap == approx(1.14 - 4.25)


def test_a_lower_is_better_mean_under_target_meets_it(default_plan: ScoringPlan) -> None:
    # repair_mean_ttr_hours: scale [[4, 5], [12, 4], [24, 2], [48, 1]], target 8 hours
    repair = kpi(default_plan, "repair_mean_ttr_hours")
    ratio, met, gap = kpi_target(repair, 5.54, repair.scale(5.54))
    assert ratio == approx(8 / 5.54) == approx(1.444043, abs=1e-6)  # better than target
    assert met is True
    # points(5.54) = 5 - 1.54 / 8 = 4.8075; points(8) = 5 - 4 / 8 = 4.5
    assert gap == approx(0.3075)


def test_a_higher_is_better_ratio_reads_value_over_target(default_plan: ScoringPlan) -> None:
    # observe_csat: scale [[0.60, 1], [0.75, 3], [0.90, 5]], target 0.85
    csat = kpi(default_plan, "observe_csat")
    assert not csat.scale.lower_is_better
    ratio, met, gap = kpi_target(csat, 0.78, csat.scale(0.78))
    assert ratio == approx(0.78 / 0.85)
    assert met is False
    # points(0.78) = 3 + 2 * 0.03 / 0.15 = 3.4; points(0.85) = 3 + 2 * 0.10 / 0.15 = 4.3333
    assert gap == approx(3.4 - 4.333333, abs=1e-6)
    assert kpi_target(csat, 0.85, csat.scale(0.85))[1] is True  # on target meets it


def test_no_ratio_for_a_zero_divisor_or_a_negative_value(default_plan: ScoringPlan) -> None:
    dispute = kpi(default_plan, "bill_dispute_ratio")
    ratio, met, gap = kpi_target(dispute, 0.0, dispute.scale(0.0))  # no dispute at all
    assert ratio is None and met is True and gap == approx(5 - 4.25)
    nps = kpi(default_plan, "observe_nps")  # scale [[-20, 1], [10, 3], [40, 5]], target 30
    ratio, met, gap = kpi_target(nps, -10.0, nps.scale(-10.0))
    # points(-10) = 1 + 2 * 10 / 30 = 1.6667; points(30) = 3 + 2 * 20 / 30 = 4.3333
    assert ratio is None and met is False and gap == approx(1.666667 - 4.333333, abs=1e-6)


def test_no_target_fields_without_a_target_or_a_value(default_plan: ScoringPlan) -> None:
    dispute = kpi(default_plan, "bill_dispute_ratio")
    assert kpi_target(dispute, None, None) == (None, None, None)
    untargeted = KpiDef(**{**{f: getattr(dispute, f) for f in dispute.__slots__}, "target": None})
    assert kpi_target(untargeted, 0.01, 3.0) == (None, None, None)


CALENDAR = LocalCalendar("Asia/Ho_Chi_Minh")


def window_ms(kind: str, local: str) -> int:
    start = CALENDAR.window_start(kind, local_ms(local))  # type: ignore[arg-type]
    return CALENDAR.window_end(kind, start) - start  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "inside", "expected"),
    [
        # 10 complaints among 20,000 subscribers = 0.5 per 1,000 in the window;
        # per 30 days: a day x 30 = 15, a 31-day October x 30/31, a 30-day November x 1
        ("day", "2026-11-05 10:00", 15.0),
        ("month", "2026-10-20 10:00", 0.5 * 30 / 31),
        ("month", "2026-11-20 10:00", 0.5),
        ("month", "2027-02-10 10:00", 0.5 * 30 / 28),
    ],
)
def test_a_rate_is_per_1000_subscribers_per_30_days_in_every_window(
    kind: str, inside: str, expected: float
) -> None:
    assert kpi_value("rate", 10, 0, 0, 20_000, window_ms(kind, inside)) == approx(expected)


def test_a_rate_on_the_rolling_hour_scales_by_720() -> None:
    assert kpi_value("rate", 10, 0, 0, 20_000, 3_600_000) == approx(0.5 * 720)
    assert kpi_value("rate", 10, 0, 0, None, 3_600_000) is None  # no base: did not occur


def test_the_same_daily_churn_gives_the_same_rate_in_a_day_and_a_month() -> None:
    # 2 cancellations a day among 10,000 subscribers, all November (30 days) long
    day = kpi_value("rate", 2, 0, 0, 10_000, window_ms("day", "2026-11-05 10:00"))
    month = kpi_value("rate", 2 * 30, 0, 0, 10_000, window_ms("month", "2026-11-05 10:00"))
    assert day == approx(month) == approx(6.0)
