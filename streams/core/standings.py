"""Standings: the units ranked by score, per window and key (the operator's monthly league of
provinces, source §III.5-6). Pure: the batch replay and the stream's network level build the
same records from the units' scores.

One standings record per window and key: the unit ranking (service and touchpoint null), one
per service, one per service and touchpoint. `units` lists the units that have a score, best
first; `rank` is competition ranking on the full-precision score (equal scores share a rank,
the next rank skips: 1, 2, 2, 4), ties listed by unit code; `rank_prev` is the unit's rank in
the previous window of the same kind (null if it was not ranked there), `delta_prev` its score
minus its score there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from streams.core.classes import classify
from streams.core.plan import ScoringPlan
from streams.core.records import Record

STANDINGS_LEVEL: Final = "standings"
# (service, touchpoint): (None, None) ranks units, (service, None) services, both touchpoints
StandingsKey = tuple[str | None, str | None]
# per key, per unit: its score (None: no score, not ranked)
Scores = Mapping[StandingsKey, Mapping[str, float | None]]


def standings_key(record: Mapping[str, Any]) -> str:
    """The compacted topic's key of a standings record: window/window_start/service/
    touchpoint ("-" for none)."""
    service, touchpoint = record["service"] or "-", record["touchpoint"] or "-"
    return f"{record['window']}/{record['window_start']}/{service}/{touchpoint}"


def standings_keys(plan: ScoringPlan) -> Iterator[StandingsKey]:
    """Every key, in the order the records are written: units, then per service its own
    ranking followed by its touchpoints'."""
    yield None, None
    for svc in plan.services:
        yield svc.service, None
        for ti in svc.touchpoints:
            yield svc.service, plan.touchpoints[ti].touchpoint


def scores_by_key(rows: Iterable[Mapping[str, Any]]) -> dict[StandingsKey, dict[str, float | None]]:
    """The scores standings rank, from unit, service and touchpoint records (or rows)."""
    out: dict[StandingsKey, dict[str, float | None]] = {}
    for row in rows:
        level = row["level"]
        if level == "unit":
            key: StandingsKey = (None, None)
        elif level == "service":
            key = (row["service"], None)
        elif level == "touchpoint":
            key = (row["service"], row["touchpoint"])
        else:
            continue
        out.setdefault(key, {})[row["unit"]] = row["score"]
    return out


def ranking(
    scores: Mapping[str, float | None], previous: Mapping[str, float | None] | None = None
) -> list[dict[str, Any]]:
    """The ranked units of one key: `{unit, score, class, rank, rank_prev, delta_prev}`."""
    ranked = sorted(
        ((unit, score) for unit, score in scores.items() if score is not None),
        key=lambda item: (-item[1], item[0]),
    )
    before = ranks(previous) if previous else {}
    out: list[dict[str, Any]] = []
    rank = 0
    for position, (unit, score) in enumerate(ranked, start=1):
        if position == 1 or score != ranked[position - 2][1]:
            rank = position
        previous_score = previous.get(unit) if previous else None
        out.append(
            {
                "unit": unit,
                "score": score,
                "class": classify(score),
                "rank": rank,
                "rank_prev": before.get(unit),
                "delta_prev": score - previous_score if previous_score is not None else None,
            }
        )
    return out


def ranks(scores: Mapping[str, float | None]) -> dict[str, int]:
    """Each scored unit's competition rank."""
    return {entry["unit"]: entry["rank"] for entry in ranking(scores)}


def standings_records(
    plan: ScoringPlan,
    window: str,
    window_start: str,
    scores: Scores,
    previous: Scores | None = None,
) -> list[Record]:
    """The standings records of one window (every key, even one no unit has a score for:
    its `units` is empty)."""
    out: list[Record] = []
    for service, touchpoint in standings_keys(plan):
        key = (service, touchpoint)
        out.append(
            {
                "level": STANDINGS_LEVEL,
                "window": window,
                "window_start": window_start,
                "service": service,
                "touchpoint": touchpoint,
                "units": ranking(scores.get(key, {}), previous.get(key) if previous else None),
                "catalog_version": plan.version,
            }
        )
    return out
