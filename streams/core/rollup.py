"""CEMI roll-up (SPEC §3): KPI points -> touchpoint -> service -> unit -> network.

Each level is the weighted mean of the present children. A KPI whose denominator is 0 did
not occur and is left out; its weight goes to the remaining KPIs of the touchpoint in
proportion to their weights (which is what dividing by the present weights does). The same
rule applies upward; a level with no child left has no score (None), never a made-up one.
`coverage` is the share of the nominal child weight that was present.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from streams.core.accumulators import Accumulators
from streams.core.plan import KpiDef, ScoringPlan


@dataclass(frozen=True, slots=True)
class KpiResult:
    value: float | None
    points: float | None
    numerator: float
    denominator: float


@dataclass(frozen=True, slots=True)
class LevelResult:
    score: float | None
    coverage: float


@dataclass(frozen=True, slots=True)
class UnitScores:
    """All levels of one unit in one window; lists are indexed like the plan's tables."""

    kpis: list[KpiResult]
    touchpoints: list[LevelResult]
    services: list[LevelResult]
    unit: LevelResult


RATE_PERIOD_MS: Final = 30 * 86_400_000  # rates are per 1,000 subscribers per 30 days


def kpi_value(
    kind: str, n: float, a: float, b: float, base: float | None, window_ms: int
) -> float | None:
    """A KPI's value from its accumulator `(n, a, b)` over a window `window_ms` long; None
    when it did not occur (no events, or a rate without a subscriber base).

    A rate is per 1,000 active subscribers per 30 days, whatever the window: its count is
    scaled by 30 days / the window's actual length (a day by 30, a 31-day month by 30/31,
    the rolling hour by 720), so one scale means the same in every window."""
    if kind == "rate":
        # no base (or an empty one) means no denominator
        return 1000.0 * n / base * (RATE_PERIOD_MS / window_ms) if base else None
    if n == 0:
        return None
    if kind == "nps":
        return 100.0 * (a - b) / n
    return a / n


def kpi_result(
    kpi: KpiDef, acc: list[float] | None, base: float | None, window_ms: int
) -> KpiResult:
    """Value, points, numerator and denominator of one KPI from its accumulator."""
    n, a, b = acc if acc is not None else (0.0, 0.0, 0.0)
    kind = kpi.kind
    value = kpi_value(kind, n, a, b, base, window_ms)
    numerator = n if kind == "rate" else a - b if kind == "nps" else a
    if value is None:
        return KpiResult(None, None, numerator, 0.0)
    denominator = base if kind == "rate" and base else n
    return KpiResult(value, kpi.scale(value), numerator, denominator)


def weighted_mean(parts: Iterable[tuple[float, float | None]]) -> LevelResult:
    """Weighted mean of the present (score not None) parts, and the present weight share."""
    total = present = acc = 0.0
    for weight, score in parts:
        total += weight
        if score is not None:
            present += weight
            acc += weight * score
    if present == 0.0:
        return LevelResult(None, 0.0)
    return LevelResult(acc / present, present / total)


def score_unit(
    plan: ScoringPlan,
    accumulators: Accumulators,
    bases: Mapping[str, float] | None,
    window_ms: int,
) -> UnitScores:
    """Every level of one unit from its KPI accumulators and subscriber bases per service,
    over a window `window_ms` long (the rates' period)."""
    bases = bases or {}
    kpis = [
        kpi_result(k, accumulators.get(k.index), bases.get(k.service), window_ms) for k in plan.kpis
    ]
    touchpoints = [
        weighted_mean((plan.kpis[i].weight, kpis[i].points) for i in tp.kpis)
        for tp in plan.touchpoints
    ]
    services = [
        weighted_mean((plan.touchpoints[i].weight, touchpoints[i].score) for i in svc.touchpoints)
        for svc in plan.services
    ]
    unit = weighted_mean((svc.weight, services[svc.index].score) for svc in plan.services)
    return UnitScores(kpis, touchpoints, services, unit)


def score_network(
    unit_scores: Mapping[str, float | None], weights: Mapping[str, float]
) -> LevelResult:
    """Network CEMI: the units' CEMIs weighted by unit weight (default 1), units sorted."""
    return weighted_mean((weights.get(u, 1.0), unit_scores[u]) for u in sorted(unit_scores))
