from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.accumulators import Accumulators
from streams.core.accumulators import add as add_contributions
from streams.core.accumulators import merge as merge_accumulators
from streams.core.events import validate_event
from streams.core.plan import ScoringPlan
from tests.strategies import event_lists


def _accumulate(plan: ScoringPlan, events: list[dict[str, Any]]) -> Accumulators:
    accumulators: Accumulators = {}
    for e in events:
        add_contributions(accumulators, plan.contributions(validate_event(dict(e))))
    return accumulators


@settings(max_examples=150, deadline=None)
@given(event_lists(), st.data())
def test_merging_two_halves_equals_accumulating_the_whole(
    default_plan: ScoringPlan, events: list[dict[str, Any]], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(events)))
    merged = _accumulate(default_plan, events[:cut])
    merge_accumulators(merged, _accumulate(default_plan, events[cut:]))
    whole = _accumulate(default_plan, events)
    assert merged.keys() == whole.keys()
    for index, (n, a, b) in whole.items():
        assert merged[index][0] == n and merged[index][2] == b
        assert merged[index][1] == pytest.approx(a, rel=1e-12, abs=1e-9)


@settings(max_examples=150, deadline=None)
@given(event_lists())
def test_memoised_matching_equals_evaluating_every_predicate(
    default_plan: ScoringPlan, events: list[dict[str, Any]]
) -> None:
    for e in events:
        e = validate_event(dict(e))
        matcher = default_plan._matchers.get((e["type"], e.get("service")))
        if matcher is None:
            continue
        fixed, read = matcher._resolve(e)
        expected = [*fixed, *((i, float(e[f]), 0.0) for i, f in read if e[f] is not None)]
        assert default_plan.contributions(e) == expected


def test_each_kind_contributes_what_its_formula_needs(small_plan: ScoringPlan) -> None:
    from tests.factories import event

    index = {k.kpi: k.index for k in small_plan.kpis}
    install = event("install", kind="install", status="completed", on_time=False, delay_hours=4)
    assert sorted(small_plan.contributions(validate_event(install))) == [
        (index["on_time"], 0.0, 0.0),
        (index["delay"], 4.0, 0.0),
    ]
    survey = validate_event(event("survey", touchpoint="care", nps=6))
    assert small_plan.contributions(survey) == [(index["nps"], 0.0, 1.0)]
    churn = validate_event(event("cancellation", status="completed", reason="price"))
    assert small_plan.contributions(churn) == [(index["churn"], 0.0, 0.0)]
    other_service = validate_event(
        event("cancellation", service="mytv", status="completed", reason="price")
    )
    assert small_plan.contributions(other_service) == []
