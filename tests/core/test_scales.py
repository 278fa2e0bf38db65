from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.scales import Scale

SCALE = Scale([[0.8, 1], [0.9, 3], [0.98, 5]])


@pytest.mark.parametrize(
    ("value", "points"),
    [(0.5, 1), (0.8, 1), (0.85, 2), (0.9, 3), (0.94, 4), (0.98, 5), (1.0, 5)],
)
def test_points_interpolate_linearly_and_clamp_outside(value: float, points: float) -> None:
    assert SCALE(value) == pytest.approx(points, abs=1e-12)


def test_descending_points_mean_lower_is_better() -> None:
    hours = Scale([[2, 5], [24, 1]])
    assert hours.lower_is_better
    assert hours(1) == 5 and hours(48) == 1 and hours(13) == pytest.approx(3.0)


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9))
def test_points_stay_within_the_breakpoints_points(value: float) -> None:
    assert 1 <= SCALE(value) <= 5
