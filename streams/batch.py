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
from streams.core.records import Record, RecordKey, record_key, window_records
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

    def records(self, kind: WindowKind, with_standings: bool = False) -> list[Record]:
        """Records of every window of `kind` seen, in window order (deterministic): each
        window's score and KPI records and its network record, then (`with_standings`, as
        `cemi score` writes them) its standings. Every window is scored once from the whole
        file: standings are `final`, revision 1."""
        out: list[Record] = []
        scores_by_start: dict[int, dict[RecordKey, float | None]] = {}
        ranked_by_start: dict[int, Scores] = {}
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
            if not with_standings:
                continue
            for standing in standings_records(
                self.plan, kind, iso, ranked, ranked_by_start.get(previous_start)
            ):
                out.append({**standing, "window_start_ms": start, "final": True, "revision": 1})
        return out


def dump_records(records: Iterable[Record]) -> Iterable[bytes]:
    option = orjson.OPT_APPEND_NEWLINE
    for record in records:
        yield orjson.dumps(record, option=option)
