"""Score records of one window: every level and key, with class, deltas and target ratio.

The same builder serves the batch replay (`cemi score`) and the stream, so both publish the
same fields computed the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from streams.core.classes import classify
from streams.core.plan import ScoringPlan
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
                yield _row(
                    "kpi",
                    unit,
                    svc.service,
                    tp.touchpoint,
                    kpi.kpi,
                    k.points,
                    _ratio(k.value, kpi.target),
                    None,
                    k.value,
                    k.numerator,
                    k.denominator,
                )


def window_records(
    plan: ScoringPlan,
    window: str,
    window_start: str,
    units: Mapping[str, UnitScores],
    previous: Mapping[RecordKey, float | None] | None = None,
) -> list[Record]:
    """All records of one window for the given units (sorted), plus the network record.

    `previous` maps record keys of the previous window of the same kind to their scores, for
    `delta_prev`. `delta_network` compares with the unweighted mean across units of the same
    key (units compare with the network CEMI).
    """
    rows: list[Record] = []
    for unit in sorted(units):
        rows.extend(unit_rows(plan, unit, units[unit]))
    network = score_network(
        {u: s.unit.score for u, s in units.items()}, {u: plan.catalog.unit_weight(u) for u in units}
    )
    rows.append(
        _row(
            "network",
            None,
            None,
            None,
            None,
            network.score,
            _ratio(network.score, plan.catalog.target),
            network.coverage,
        )
    )
    sums: dict[tuple[str, str | None, str | None, str | None], list[float]] = {}
    for row in rows:
        if row["level"] in ("unit", "network") or row["score"] is None:
            continue
        key = (row["level"], row["service"], row["touchpoint"], row["kpi"])
        acc = sums.setdefault(key, [0.0, 0.0])
        acc[0] += row["score"]
        acc[1] += 1
    for row in rows:
        score = row["score"]
        level = row["level"]
        reference: float | None
        if level == "network":
            reference = None
        elif level == "unit":
            reference = network.score
        else:
            mean = sums.get((level, row["service"], row["touchpoint"], row["kpi"]))
            reference = mean[0] / mean[1] if mean else None
        row["delta_network"] = (
            score - reference if score is not None and reference is not None else None
        )
        before = previous.get(record_key(row)) if previous else None
        row["delta_prev"] = score - before if score is not None and before is not None else None
        row["window"] = window
        row["window_start"] = window_start
        row["catalog_version"] = plan.version
    return rows
