"""KPI accumulators: the one place their arithmetic is defined.

An accumulator is `[n, a, b]` per KPI index (see `streams.core.plan` for what n, a and b
count per KPI kind). Accumulators form a commutative monoid under addition, which is what
lets the stream fold pre-aggregated envelopes, merge months into quarters and years, and
slide the rolling window by adding the slice that enters and taking out the one that leaves.

Three operations:

- `add`: one event's contributions `(index, a, b)` (each counts 1 in `n`);
- `merge`: another accumulator set, added in;
- `signed_add`: another set added (sign 1) or taken out (sign -1).

The fold and the alert evaluator inline these loops where they run once per event or per
slice boundary (`PartitionState._fold`, `UnitRolling.add`): each such copy says so, and
`tests/core/test_accumulators.py` proves every copy equal to these functions.
"""

from __future__ import annotations

from collections.abc import Iterable

Accumulators = dict[int, list[float]]  # kpi index -> [n, a, b]
Contribution = tuple[int, float, float]  # (kpi index, a, b): one event, n += 1


def add(accumulators: Accumulators, contributions: Iterable[Contribution]) -> None:
    """Add one event's contributions."""
    for index, a, b in contributions:
        acc = accumulators.get(index)
        if acc is None:
            accumulators[index] = [1.0, a, b]
        else:
            acc[0] += 1.0
            acc[1] += a
            acc[2] += b


def merge(into: Accumulators, other: Accumulators) -> None:
    """Add `other` into `into`."""
    for index, (n, a, b) in other.items():
        acc = into.get(index)
        if acc is None:
            into[index] = [n, a, b]
        else:
            acc[0] += n
            acc[1] += a
            acc[2] += b


def signed_add(into: Accumulators, other: Accumulators, sign: float) -> None:
    """Add (sign 1) or take out (sign -1) `other`."""
    for index, (n, a, b) in other.items():
        acc = into.get(index)
        if acc is None:
            acc = into[index] = [0.0, 0.0, 0.0]
        acc[0] += sign * n
        acc[1] += sign * a
        acc[2] += sign * b
