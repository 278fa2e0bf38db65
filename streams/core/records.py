"""Score records of one window: every level and key, with class, deltas and target ratio.

The same builder serves the batch replay (`cemi score`) and the stream, so both publish the
same fields computed the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from streams.core.classes import classify
from streams.core.plan import KpiDef, ScoringPlan
from streams.core.rollup import UnitScores, score_network

LEVELS: Final = ("kpi", "touchpoint", "service", "unit", "network")
RecordKey = tuple[str, str | None, str | None, str | None, str | None]  # level,unit,svc,tp,kpi
Record = dict[str, Any]


def record_key(record: Mapping[str, Any]) -> RecordKey:
    return (
        record["level"],
        record["unit"],
        record["service"],
        record["touchpoint"],
        record["kpi"],
    )


def _ratio(score: float | None, target: float | None) -> float | None:
    if score is None or target is None:
        return None
    return score / target


def kpi_target(
    kpi: KpiDef, value: float | None, points: float | None
) -> tuple[float | None, bool | None, float | None]:
    """(target_ratio, target_met, target_gap_points) of a KPI value, by the KPI's direction:
    lower is better when its scale's points decrease with the value.

    - ratio: value / target (higher is better) or target / value (lower is better): 1 is on
      target, above 1 better; null when the divisor is 0 or either is negative;
    - met: value >= target (higher) or value <= target (lower);
    - gap: points(value) - points(target) on the KPI's own scale (negative: short of it).
    All null without a target or a value."""
    target = kpi.target
    if target is None or value is None:
        return None, None, None
    lower = kpi.scale.lower_is_better
    ratio: float | None = None
    if value >= 0 and target >= 0:
        numerator, divisor = (target, value) if lower else (value, target)
        ratio = numerator / divisor if divisor else None
    met = value <= target if lower else value >= target
    gap = points - kpi.scale(target) if points is not None else None
    return ratio, met, gap


def _row(
    level: str,
    unit: str | None,
    service: str | None,
    touchpoint: str | None,
    kpi: str | None,
    score: float | None,
    target_ratio: float | None,
    coverage: float | None = None,
    value: float | None = None,
    numerator: float | None = None,
    denominator: float | None = None,
    target_met: bool | None = None,
    target_gap_points: float | None = None,
) -> Record:
    return {
        "level": level,
        "unit": unit,
        "service": service,
        "touchpoint": touchpoint,
        "kpi": kpi,
        "score": score,
        "class": classify(score),
        "value": value,
        "numerator": numerator,
        "denominator": denominator,
        "coverage": coverage,
        "target_ratio": target_ratio,
        "target_met": target_met,
        "target_gap_points": target_gap_points,
    }


def unit_rows(plan: ScoringPlan, unit: str, scores: UnitScores) -> Iterator[Record]:
    """A unit's rows, top-down: unit, then per service its touchpoints, each with its KPIs."""
    target = plan.catalog.target
    yield _row(
        "unit",
        unit,
        None,
        None,
        None,
        scores.unit.score,
        _ratio(scores.unit.score, target),
        scores.unit.coverage,
    )
    for svc in plan.services:
        result = scores.services[svc.index]
        yield _row(
            "service",
            unit,
            svc.service,
            None,
            None,
            result.score,
            _ratio(result.score, svc.target),
            result.coverage,
        )
        for ti in svc.touchpoints:
            tp = plan.touchpoints[ti]
            tp_result = scores.touchpoints[ti]
            yield _row(
                "touchpoint",
                unit,
                svc.service,
                tp.touchpoint,
                None,
                tp_result.score,
                _ratio(tp_result.score, tp.target),
                tp_result.coverage,
            )
            for ki in tp.kpis:
                kpi = plan.kpis[ki]
                k = scores.kpis[ki]
                ratio, met, gap = kpi_target(kpi, k.value, k.points)
                yield _row(
                    "kpi",
                    unit,
                    svc.service,
                    tp.touchpoint,
                    kpi.kpi,
                    k.points,
                    ratio,
                    None,
                    k.value,
                    k.numerator,
                    k.denominator,
                    met,
                    gap,
                )


def network_row(plan: ScoringPlan, unit_scores: Mapping[str, float | None]) -> Record:
    """The network record: unit CEMIs weighted by unit weight (default 1)."""
    network = score_network(unit_scores, {u: plan.catalog.unit_weight(u) for u in unit_scores})
    target = plan.catalog.target
    return _row(
        "network",
        None,
        None,
        None,
        None,
        network.score,
        _ratio(network.score, target),
        network.coverage,
    )


MeanKey = tuple[str, str | None, str | None, str | None]  # level, service, touchpoint, kpi


def network_means(rows: Iterable[Record]) -> dict[MeanKey, float]:
    """Unweighted mean across units of every present score, per level and key."""
    return means_of((r["level"], r["service"], r["touchpoint"], r["kpi"], r["score"]) for r in rows)


def means_of(
    rows: Iterable[Sequence[Any]],
) -> dict[MeanKey, float]:
    """`network_means` of rows given as (level, service, touchpoint, kpi, score): the form
    units' summaries carry them in to the network level."""
    sums: dict[MeanKey, list[float]] = {}
    for level, service, touchpoint, kpi, score in rows:
        if score is None or level == "unit" or level == "network":
            continue
        acc = sums.get((level, service, touchpoint, kpi))
        if acc is None:
            sums[(level, service, touchpoint, kpi)] = [score, 1.0]
        else:
            acc[0] += score
            acc[1] += 1.0
    return {key: total / count for key, (total, count) in sums.items()}


def annotate(
    rows: Iterable[Record],
    *,
    window: str,
    window_start: str,
    version: str,
    previous: Mapping[RecordKey, float | None] | None,
    means: Mapping[MeanKey, float] | None,
    network_score: float | None,
) -> None:
    """Add the window fields and the deltas: `delta_prev` against `previous` (scores of the
    previous window of the same kind), `delta_network` against `means` (units: against the
    network score). Unknown references give null deltas."""
    for row in rows:
        score = row["score"]
        level = row["level"]
        reference: float | None
        if level == "network":
            reference = None
        elif level == "unit":
            reference = network_score
        else:
            key = (level, row["service"], row["touchpoint"], row["kpi"])
            reference = means.get(key) if means else None
        row["delta_network"] = (
            score - reference if score is not None and reference is not None else None
        )
        before = previous.get(record_key(row)) if previous else None
        row["delta_prev"] = score - before if score is not None and before is not None else None
        row["window"] = window
        row["window_start"] = window_start
        row["catalog_version"] = version


def window_records(
    plan: ScoringPlan,
    window: str,
    window_start: str,
    units: Mapping[str, UnitScores],
    previous: Mapping[RecordKey, float | None] | None = None,
) -> list[Record]:
    """All records of one window for the given units (sorted), plus the network record."""
    rows: list[Record] = []
    for unit in sorted(units):
        rows.extend(unit_rows(plan, unit, units[unit]))
    network = network_row(plan, {u: s.unit.score for u, s in units.items()})
    rows.append(network)
    annotate(
        rows,
        window=window,
        window_start=window_start,
        version=plan.version,
        previous=previous,
        means=network_means(rows),
        network_score=network["score"],
    )
    return rows
