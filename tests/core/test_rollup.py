from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from streams.core.accumulators import Accumulators
from streams.core.catalog import Catalog, parse_catalog
from streams.core.plan import ScoringPlan
from streams.core.rollup import score_unit, weighted_mean

weights = st.floats(0.01, 1000, allow_nan=False)
scores = st.none() | st.floats(1, 5, allow_nan=False)

DAY_MS = 86_400_000


@given(st.lists(st.tuples(weights, scores), min_size=1, max_size=12))
def test_weighted_mean_is_within_1_and_5_or_none(parts: list[tuple[float, float | None]]) -> None:
    result = weighted_mean(parts)
    present = [s for _, s in parts if s is not None]
    if present:
        assert result.score is not None
        assert min(present) - 1e-9 <= result.score <= max(present) + 1e-9
        assert 0 < result.coverage <= 1 + 1e-12
    else:
        assert result.score is None and result.coverage == 0


@given(st.lists(st.tuples(weights, scores), min_size=1, max_size=12), weights)
def test_scaling_all_weights_of_a_level_changes_nothing(
    parts: list[tuple[float, float | None]], factor: float
) -> None:
    base = weighted_mean(parts)
    scaled = weighted_mean([(w * factor, s) for w, s in parts])
    if base.score is None:
        assert scaled.score is None
    else:
        assert scaled.score == pytest.approx(base.score, abs=1e-9)
        assert scaled.coverage == pytest.approx(base.coverage, abs=1e-9)


@given(st.lists(st.tuples(weights, scores), min_size=1, max_size=12))
def test_excluded_parts_are_the_same_as_absent_parts(
    parts: list[tuple[float, float | None]],
) -> None:
    present = [(w, s) for w, s in parts if s is not None]
    assume(present)
    assert weighted_mean(parts).score == pytest.approx(weighted_mean(present).score, abs=1e-9)


def _accumulators(plan: ScoringPlan, draw: st.DrawFn) -> Accumulators:
    accumulators: Accumulators = {}
    for kpi in plan.kpis:
        n = draw(st.integers(0, 50))
        if n == 0:
            continue
        if kpi.kind == "ratio":
            accumulators[kpi.index] = [n, draw(st.integers(0, n)), 0]
        elif kpi.kind == "nps":
            promoters = draw(st.integers(0, n))
            accumulators[kpi.index] = [n, promoters, draw(st.integers(0, n - promoters))]
        elif kpi.kind == "mean":
            accumulators[kpi.index] = [n, draw(st.floats(0, 500 * n)), 0]
        else:
            accumulators[kpi.index] = [n, 0, 0]
    return accumulators


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_every_score_of_the_default_catalog_is_in_1_to_5_or_none(
    default_plan: ScoringPlan, data: st.DataObject
) -> None:
    accumulators = _accumulators(default_plan, data.draw)
    bases = data.draw(st.dictionaries(st.sampled_from(["mobile", "mytv"]), st.integers(0, 10**6)))
    result = score_unit(default_plan, accumulators, {k: float(v) for k, v in bases.items()}, DAY_MS)
    levels = [*result.touchpoints, *result.services, result.unit]
    for score in [k.points for k in result.kpis] + [level.score for level in levels]:
        assert score is None or 1 <= score <= 5


def _without_kpi(catalog: Catalog, service: str, touchpoint: str, kpi: str) -> ScoringPlan:
    data: dict[str, Any] = copy.deepcopy(catalog.model_dump(exclude_none=True))
    del data["services"][service]["touchpoints"][touchpoint]["kpis"][kpi]
    return ScoringPlan(parse_catalog(data))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_zero_denominator_kpi_scores_like_the_catalog_without_it(
    small_plan: ScoringPlan, data: st.DataObject
) -> None:
    # The install touchpoint has on_time (weight 3) and delay (weight 1): drop on_time's data.
    accumulators = _accumulators(small_plan, data.draw)
    on_time = next(k for k in small_plan.kpis if k.kpi == "on_time")
    accumulators.pop(on_time.index, None)
    reduced = _without_kpi(small_plan.catalog, "mobile", "install", "on_time")
    moved = {
        reduced.kpis.index(next(k for k in reduced.kpis if k.kpi == small_plan.kpis[i].kpi)): acc
        for i, acc in accumulators.items()
    }
    full = score_unit(small_plan, accumulators, {"mobile": 1000.0}, DAY_MS)
    alone = score_unit(reduced, moved, {"mobile": 1000.0}, DAY_MS)
    assert full.touchpoints[0].score == alone.touchpoints[0].score
    assert full.unit.score == alone.unit.score
