"""Quality classes of a CEMI value (SPEC §3), compared at full precision, never rounded."""

from __future__ import annotations

from typing import Final

# (lower bound inclusive, class); the first bound that the score reaches, from the top, wins.
CLASS_BOUNDS: Final = ((4.5, "excellent"), (3.5, "good"), (3.0, "fair"), (2.0, "average"))
CLASSES: Final = ("poor", "average", "fair", "good", "excellent")


def classify(score: float | None) -> str | None:
    """`poor` [1,2), `average` [2,3), `fair` [3,3.5), `good` [3.5,4.5), `excellent` [4.5,5]."""
    if score is None:
        return None
    for bound, name in CLASS_BOUNDS:
        if score >= bound:
            return name
    return "poor"
