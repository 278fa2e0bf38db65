"""The accumulator arithmetic (`streams.core.accumulators`) and the hot-path copies that inline
it: the fold's per-event add into day, month and slice windows, and the alert evaluator's
signed add with counts. Each copy must give what the functions give."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pytest import approx

from streams.core.accumulators import Accumulators, add, merge, signed_add
from streams.core.events import SNAPSHOT_TYPES, validate_event
from streams.core.plan import ScoringPlan
from streams.core.windows import LocalCalendar, slice_start_ms
from streams.scoring.alerting import AlertEvaluator
from streams.scoring.fold import PartitionState
from streams.scoring.rolling import UnitRolling
from tests.scoring.test_fold import CONFIG, NOW, entries
from tests.strategies import event_lists

CALENDAR = LocalCalendar(CONFIG.timezone)

contributions = st.lists(
    st.tuples(st.integers(0, 5), st.floats(-50, 50), st.floats(0, 10)), max_size=12
)


def close(left: Accumulators, right: Accumulators) -> bool:
    return left.keys() == right.keys() and all(left[k] == approx(right[k], abs=1e-9) for k in left)


@given(contributions, contributions)
def test_merging_two_halves_gives_the_whole(first: list[Any], second: list[Any]) -> None:
    whole: Accumulators = {}
    add(whole, first + second)
    left: Accumulators = {}
    right: Accumulators = {}
    add(left, first)
    add(right, second)
    merge(left, right)
    assert close(left, whole)


@given(contributions, contributions)
def test_a_signed_add_taken_out_again_leaves_the_rest(base: list[Any], moved: list[Any]) -> None:
    kept: Accumulators = {}
    add(kept, base)
    other: Accumulators = {}
    add(other, moved)
    total = {k: list(v) for k, v in kept.items()}
    signed_add(total, other, 1.0)
    signed_add(total, other, -1.0)
    assert all(total[k] == approx(kept.get(k, [0.0, 0.0, 0.0]), abs=1e-9) for k in total)


@settings(max_examples=60, deadline=None)
@given(event_lists())
def test_the_folds_inlined_add_equals_the_function_in_every_window(
    small_plan: ScoringPlan, events: list[dict[str, Any]]
) -> None:
    state = PartitionState(0, CONFIG)
    state.apply(entries(small_plan, events, sources=1), NOW)
    expected: dict[tuple[str, str, int], Accumulators] = {}
    late_or_other = state.counts.late + state.counts.duplicates
    for event in events:
        e = validate_event(dict(event))
        if e["type"] in SNAPSHOT_TYPES:
            continue
        day, month = CALENDAR.starts(e["event_time"])
        slice_ = slice_start_ms(e["event_time"], CONFIG.rolling_slice_ms)
        for key in ((e["unit"], "day", day), (e["unit"], "month", month), (e["unit"], "s", slice_)):
            add(expected.setdefault(key, {}), small_plan.contributions(e))
    assert late_or_other == 0  # one envelope: no watermark yet, nothing late
    for (unit, kind, start), accumulators in expected.items():
        if kind == "s":
            assert close(state.units[unit].slices[start], accumulators)
        else:
            assert close(state.windows[(unit, kind, start)].accumulators, accumulators)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.booleans(), contributions), max_size=8))
def test_the_rolling_windows_inlined_signed_add_equals_the_function(
    small_plan: ScoringPlan, moves: list[tuple[bool, list[Any]]]
) -> None:
    evaluator = AlertEvaluator(small_plan, CONFIG.rolling_span_ms, CONFIG.rolling_slice_ms)
    kpis = len(small_plan.kpis)
    rolling = UnitRolling(boundary=0)
    rolling.recount(evaluator.kpi_groups, len(small_plan.touchpoints), len(small_plan.services))
    expected: Accumulators = {}
    for entering, made in moves:
        slice_: Accumulators = {}
        add(slice_, [(k % kpis, a, b) for k, a, b in made])
        sign = 1.0 if entering else -1.0
        rolling.add(slice_, sign, evaluator.kpi_groups)
        signed_add(expected, slice_, sign)
    assert close(rolling.sums, expected)
