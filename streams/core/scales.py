"""KPI value -> points on the 1..5 scale: piecewise linear between breakpoints, clamped outside."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence


class Scale:
    """Breakpoints `(value, points)` with strictly increasing values (checked by the catalog)."""

    __slots__ = ("points", "values")

    def __init__(self, breakpoints: Sequence[Sequence[float]]) -> None:
        self.values = tuple(float(v) for v, _ in breakpoints)
        self.points = tuple(float(p) for _, p in breakpoints)

    def __call__(self, value: float) -> float:
        values, points = self.values, self.points
        if value <= values[0]:
            return points[0]
        if value >= values[-1]:
            return points[-1]
        i = bisect_right(values, value)  # values[i-1] <= value < values[i]
        v0, v1 = values[i - 1], values[i]
        p0, p1 = points[i - 1], points[i]
        return p0 + (p1 - p0) * (value - v0) / (v1 - v0)

    @property
    def lower_is_better(self) -> bool:
        return self.points[-1] < self.points[0]
