from __future__ import annotations

import pytest

from streams.core.classes import classify


@pytest.mark.parametrize(
    ("score", "name"),
    [
        (1.0, "poor"),
        (1.999999999, "poor"),
        (2.0, "average"),
        (2.9999999999, "average"),
        (3.0, "fair"),
        (3.4999999999, "fair"),
        (3.5, "good"),
        (4.4999999999, "good"),
        (4.5, "excellent"),
        (5.0, "excellent"),
        (None, None),
    ],
)
def test_class_boundaries_are_exact_at_full_precision(score: float | None, name: str) -> None:
    assert classify(score) == name
