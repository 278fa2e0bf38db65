"""Batch replay (`cemi score`): score a JSON-lines events file with the pure core.

Events are accumulated per (local day, unit); month, quarter and year windows are merges of
their days, which is exact because accumulators only add. The stream computes the same
records from the same core, so this is also the reference the stream is tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson

from streams.core.accumulators import Accumulators, add, merge
from streams.core.events import InvalidEvent, validate_event
from streams.core.plan import ScoringPlan
from streams.core.programmes import (
    ProgrammeDef,
    ProgrammeValues,
    baseline_start,
    check_update,
    programme_records,
)
from streams.core.records import (
    MeanKey,
    Record,
    RecordKey,
    network_means,
    record_key,
    window_records,
)
from streams.core.rollup import score_unit
from streams.core.standings import Scores, scores_by_key, standings_records
from streams.core.subscriber_base import SubscriberBases
from streams.core.windows import LocalCalendar, WindowKind

RejectHandler = Callable[[int, InvalidEvent], None]


@dataclass
class ReplayStats:
    lines: int = 0
    scored: int = 0
    rejected: int = 0
    duplicates: int = 0


def _ignore(_lineno: int, _error: InvalidEvent) -> None:
    pass


class Replay:
    """Accumulates validated events; `records(window)` scores what it has seen."""

    def __init__(self, plan: ScoringPlan) -> None:
        self.plan = plan
        self.calendar = LocalCalendar(plan.catalog.timezone)
        self.stats = ReplayStats()
        self.bases = SubscriberBases()
        self.programmes: dict[str, ProgrammeValues] = {}  # per unit
        self._seen: set[str] = set()
        self._days: dict[int, dict[str, Accumulators]] = {}

    def add_lines(self, lines: Iterable[bytes], on_reject: RejectHandler = _ignore) -> None:
        loads, validate, plan = orjson.loads, validate_event, self.plan
        seen, days, stats, starts = self._seen, self._days, self.stats, self.calendar.starts
        for lineno, line in enumerate(lines, start=stats.lines + 1):
            stats.lines = lineno
            if not line.strip():
                continue
            try:
                event = validate(loads(line))
            except orjson.JSONDecodeError as error:
                stats.rejected += 1
                on_reject(lineno, InvalidEvent("malformed", f"not a JSON object: {error}"))
                continue
            except InvalidEvent as error:
                stats.rejected += 1
                on_reject(lineno, error)
                continue
            if event["type"] == "programme_update":
                try:
                    check_update(plan.programmes, event)
                except InvalidEvent as error:
                    stats.rejected += 1
                    on_reject(lineno, error)
                    continue
            event_id = event["event_id"]
            if event_id in seen:
                stats.duplicates += 1
                continue
            seen.add(event_id)
            stats.scored += 1
            time_ms = event["event_time"]
            units = days.get(starts(time_ms)[0])
            if units is None:
                units = days[starts(time_ms)[0]] = {}
            accumulators = units.get(event["unit"])
            if accumulators is None:
                accumulators = units[event["unit"]] = {}
            if event["type"] == "subscriber_base":
                self.bases.add(
                    event["unit"], event["service"], time_ms, event["active_subscribers"]
                )
                continue
            if event["type"] == "programme_update":
                values = self.programmes.setdefault(event["unit"], ProgrammeValues())
                values.add(event["programme"], event["indicator"], time_ms, event["value"])
                continue
            add(accumulators, plan.contributions(event))

    def _windows(self, kind: WindowKind) -> dict[int, dict[str, Accumulators]]:
        if kind == "day":
            return self._days
        merged: dict[int, dict[str, Accumulators]] = {}
        for day in sorted(self._days):
            units = merged.setdefault(self.calendar.window_start(kind, day), {})
            for unit, accumulators in self._days[day].items():
                merge(units.setdefault(unit, {}), accumulators)
        return merged

    def records(self, kind: WindowKind, complete: bool = False) -> list[Record]:
        """Records of every window of `kind` seen, in window order (deterministic): each
        window's score and KPI records and its network record, then (`complete`, as `cemi
        score` writes them) its standings and programme records. Every window is scored once
        from the whole file: those are `final`, revision 1."""
        out: list[Record] = []
        scores_by_start: dict[int, dict[RecordKey, float | None]] = {}
        ranked_by_start: dict[int, Scores] = {}
        means_by_start: dict[int, dict[MeanKey, float]] = {}
        windows = self._windows(kind)
        for start in sorted(windows):
            end = self.calendar.window_end(kind, start)
            units = {
                unit: score_unit(self.plan, accumulators, self.bases.at(unit, end), end - start)
                for unit, accumulators in windows[start].items()
            }
            previous_start = self.calendar.previous_start(kind, start)
            iso = self.calendar.isoformat(start)
            rows = window_records(self.plan, kind, iso, units, scores_by_start.get(previous_start))
            scores_by_start[start] = {record_key(r): r["score"] for r in rows}
            out.extend(rows)
            ranked = ranked_by_start[start] = scores_by_key(rows)
            means = means_by_start[start] = network_means(rows)
            if not complete:
                continue
            for standing in standings_records(
                self.plan, kind, iso, ranked, ranked_by_start.get(previous_start)
            ):
                out.append({**standing, "window_start_ms": start, "final": True, "revision": 1})
            for unit in sorted(units):

                def baseline(p: ProgrammeDef) -> dict[RecordKey, float | None] | None:
                    return scores_by_start.get(baseline_start(self.calendar, kind, p))

                def baseline_means(p: ProgrammeDef) -> dict[MeanKey, float] | None:
                    return means_by_start.get(baseline_start(self.calendar, kind, p))

                for record in programme_records(
                    self.plan.programmes.values(),
                    unit=unit,
                    window=kind,
                    window_start_ms=start,
                    calendar=self.calendar,
                    values=self.programmes.get(unit, ProgrammeValues()),
                    points=scores_by_start[start],
                    baseline=baseline,
                    means=means,
                    baseline_means=baseline_means,
                    version=self.plan.version,
                ):
                    out.append({**record, "final": True, "revision": 1})
        return out


def dump_records(records: Iterable[Record]) -> Iterable[bytes]:
    option = orjson.OPT_APPEND_NEWLINE
    for record in records:
        yield orjson.dumps(record, option=option)
