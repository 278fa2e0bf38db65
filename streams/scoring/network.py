"""The network level: every unit's latest scores per window, gathered in one place (no Kafka).

Units are scored in their own partitions (possibly on other workers); each publication of a
unit window also sends a summary (the unit's rows) to a single-partition topic, which one
agent folds here into the network record of that window.

During a catch-up the partitions are at different event times, and a unit's summaries may
not have arrived yet, so the units seen in a window say nothing about its completeness.
Each partition therefore also sends its watermark (a progress message, after its summaries
on the same single-partition topic, so in order): a network window is final once every
envelope partition that has units passed its end plus the allowed lateness. A worker sends
the watermarks of all its partitions in one progress message per emit, after all their
summaries: the network level, which publishes as soon as summaries arrive, never sees the
progress of one partition of an emit without the others (it would take a window final
before the others' last summaries of it arrived). A window goes
once it and its successor are final and published. (A partition with no unit yet reports
nothing; if its first unit then brings data of a window already gone, that data is not in
the network level: the ingest's merge makes that a unit silent for longer than the window.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.core.plan import ScoringPlan
from streams.core.records import Record, RecordKey, annotate, means_of, network_row
from streams.core.standings import StandingsKey, standings_records
from streams.core.windows import LocalCalendar, is_final, window_kind

WindowId = tuple[str, int]  # (kind, start_ms)


@dataclass
class NetworkWindow:
    kind: str
    start: int
    window_start: str
    units: dict[str, dict[str, Any]] = field(default_factory=dict)  # unit -> summary
    revision: int = 0
    changed: bool = False
    published_score: float | None = None
    final: bool = False
    # per standings key: (revision, the ranked units and finality last published)
    standings: dict[StandingsKey, tuple[int, list[dict[str, Any]], bool]] = field(
        default_factory=dict
    )
    # the previous window as last seen (its published score, what its standings ranked):
    # a republication after that window expired still gets delta_prev and rank_prev
    before: tuple[float | None, dict[StandingsKey, dict[str, float | None]]] | None = None

    def scores(self) -> dict[StandingsKey, dict[str, float | None]]:
        """What the standings rank: each unit's unit, service and touchpoint scores."""
        out: dict[StandingsKey, dict[str, float | None]] = {}
        for unit, summary in self.units.items():
            out.setdefault((None, None), {})[unit] = summary["score"]
            for level, service, touchpoint, _, score in summary.get("rows", ()):
                if level == "service":
                    out.setdefault((service, None), {})[unit] = score
                elif level == "touchpoint":
                    out.setdefault((service, touchpoint), {})[unit] = score
        return out


@dataclass
class NetworkPublication:
    """What the network level publishes: network score records and standings records (each
    with its record timestamp, `LocalCalendar.stamp`), and the means views."""

    records: list[tuple[Record, int]] = field(default_factory=list)
    standings: list[tuple[Record, int]] = field(default_factory=list)
    views: list[dict[str, Any]] = field(default_factory=list)


class NetworkState:
    def __init__(self, plan: ScoringPlan, allowed_lateness_ms: int) -> None:
        self.plan = plan
        self.calendar = LocalCalendar(plan.catalog.timezone)
        self.allowed_lateness_ms = allowed_lateness_ms
        self.windows: dict[WindowId, NetworkWindow] = {}
        self.progress: dict[int, int] = {}  # envelope partition -> its watermark
        self.expired_through: dict[str, int] = {}  # per kind: newest start already gone

    def add(self, message: dict[str, Any]) -> bool:
        """Fold in a unit's summary or a partition's progress; False when it changes
        nothing (a summary of a window already gone, an older watermark)."""
        if "progress" in message:
            watermarks = message["progress"]
            changed = False
            for partition, watermark in watermarks.items():
                if watermark > self.progress.get(int(partition), -1):
                    self.progress[int(partition)] = watermark
                    changed = True
            return changed
        kind, start, unit = message["window"], message["start"], message["unit"]
        if start <= self.expired_through.get(kind, -1):
            return False
        key = (kind, start)
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = NetworkWindow(kind, start, message["window_start"])
        elif window.units.get(unit) == message:
            return False  # sent again unchanged (a unit window republished for its means)
        window.units[unit] = message
        window.changed = True
        return True

    def _is_final(self, kind: str, start: int) -> bool:
        """Final once every partition's watermark passed it (`is_final`: the units' rule)."""
        if not self.progress:
            return False
        end = self.calendar.window_end(window_kind(kind), start)
        lateness = self.allowed_lateness_ms
        return all(is_final(w, end, lateness) for w in self.progress.values())

    def publish(self, now_ms: int) -> NetworkPublication:
        """Network records of the windows whose unit scores changed since the last time,
        their standings that moved (order or a score) or became final, and each such
        window's means across units (for the units' `delta_network`)."""
        out = NetworkPublication()
        watermark = min(self.progress.values(), default=None)
        for key in sorted(self.windows):
            window = self.windows[key]
            kind, start = key
            if not window.changed and (window.final or not self._is_final(kind, start)):
                continue
            row = network_row(self.plan, {u: s["score"] for u, s in window.units.items()})
            previous = self.windows.get(
                (kind, self.calendar.previous_start(window_kind(kind), start))
            )
            if previous is not None:
                window.before = (previous.published_score, previous.scores())
            before: dict[RecordKey, float | None] | None = None
            if window.before is not None and window.before[0] is not None:
                before = {("network", None, None, None, None): window.before[0]}
            annotate(
                [row],
                window=kind,
                window_start=window.window_start,
                version=self.plan.version,
                previous=before,
                means=None,
                network_score=None,
            )
            window.revision += 1
            window.changed = False
            window.final = self._is_final(kind, start)
            window.published_score = row["score"]
            row.update(
                window_start_ms=start,
                revision=window.revision,
                final=window.final,
                published_at_ms=now_ms,
                newest_event_ingest_ms=None,
            )
            stamp = self.calendar.stamp(window_kind(kind), start, watermark)
            out.records.append((row, stamp))
            out.standings.extend((standing, stamp) for standing in self._standings(window, now_ms))
            rows = (r for summary in window.units.values() for r in summary.get("rows", ()))
            out.views.append(
                {
                    "window": kind,
                    "start": start,
                    "network": row["score"],
                    "means": [[*k, v] for k, v in means_of(rows).items()],
                }
            )
        return out

    def _standings(self, window: NetworkWindow, now_ms: int) -> list[Record]:
        """The window's standings records whose ranking moved since published, or that
        become final; the window's revision, finality and start are already set."""
        out = []
        ranked = standings_records(
            self.plan,
            window_kind(window.kind),
            window.window_start,
            window.scores(),
            window.before[1] if window.before is not None else None,
        )
        for record in ranked:
            key = (record["service"], record["touchpoint"])
            published = window.standings.get(key)
            revision = 0
            if published is not None:
                # a key goes out once even while no unit ranks in it (as `cemi score` has it)
                revision, units, final = published
                if record["units"] == units and (final or not window.final):
                    continue
            window.standings[key] = (revision + 1, record["units"], window.final)
            record.update(
                window_start_ms=window.start,
                final=window.final,
                revision=revision + 1,
                published_at_ms=now_ms,
            )
            out.append(record)
        return out

    def expire(self) -> list[str]:
        """Forget windows published final whose successor is published final too (it gave
        the successor's `delta_prev`); returns the summary keys to delete from the table."""
        gone: list[str] = []
        for kind, start in sorted(self.windows):
            window = self.windows[(kind, start)]
            successor = self.windows.get((kind, self.calendar.window_end(window_kind(kind), start)))
            published_final = window.final and not window.changed
            if not published_final or successor is None or not successor.final:
                continue
            del self.windows[(kind, start)]
            self.expired_through[kind] = max(self.expired_through.get(kind, -1), start)
            gone.extend(summary_key(kind, start, unit) for unit in window.units)
        return gone


def progress_key(partitions: Iterable[int]) -> str:
    """Where a progress message is kept: watermarks only grow, so whichever message of a
    partition is kept, folding them all gives each partition's newest."""
    return f"progress|{min(partitions, default=0)}"


def summary_key(kind: str, start: int, unit: str) -> str:
    """The key of a unit's summary (on the topic and in the network table)."""
    return f"{kind}|{start}|{unit}"


def encode_summary(summary: dict[str, Any]) -> bytes:
    return orjson.dumps(summary)


def decode_summary(value: Any) -> dict[str, Any]:
    # recovered table values arrive already decoded (Faust's JSON codec on the changelog)
    summary: dict[str, Any] = value if isinstance(value, dict) else orjson.loads(value)
    return summary
