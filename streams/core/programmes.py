"""Action programmes (source §III.2.2, §III.3.2, §III.3.4, §III.6.4): a pain point in a group-1
KPI gets a programme, with an owner, phased targets for its group-2 indicators, and the KPIs
it is meant to move. Pure: the batch replay and the stream build the same records.

Per window, unit, programme and indicator, a record (`level: "programme"`):

- `value`: the indicator's latest snapshot at or before the window's end (null if none);
- `target`: the target in force at the window's end: the phase with the earliest due date on
  or after the window's last local day; past the last phase, the last target;
- `attainment`: value / target (higher is better) or target / value (lower is better); null
  without a value or when the divisor is 0; `on_track`: attainment >= 1;
- `effect`: for each KPI the programme `improves`, its points in this window minus its points
  in the same kind of window just before the programme's start, and the same difference for
  the network mean of that KPI's points, so a reader sees whether the unit moved more than
  everyone else.

A programme's windows are those that overlap its period (local dates, both included).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from streams.core.catalog import Catalog
from streams.core.events import InvalidEvent
from streams.core.windows import LocalCalendar, WindowKind

PROGRAMME_LEVEL: Final = "programme"
KpiRef = tuple[str, str, str]  # service, touchpoint, kpi
# as in streams.core.records (not imported: records depends on the plan, which compiles these)
Record = dict[str, Any]
RecordKey = tuple[str, str | None, str | None, str | None, str | None]
MeanKey = tuple[str, str | None, str | None, str | None]


@dataclass(frozen=True, slots=True)
class IndicatorDef:
    indicator: str
    lower_is_better: bool
    phases: tuple[tuple[date, float], ...]  # (due local date, target), in due order


@dataclass(frozen=True, slots=True)
class ProgrammeDef:
    programme: str
    name: str
    owner: str
    units: frozenset[str] | None  # None: every unit
    start_ms: int  # the start date's local midnight
    end_ms: int  # the local midnight after the end date (exclusive)
    improves: tuple[KpiRef, ...]
    indicators: dict[str, IndicatorDef]

    def due_ends(self, indicator: IndicatorDef, timezone: ZoneInfo) -> list[int]:
        """Each phase's deadline: the local midnight after its due date."""
        return [_local_midnight(due + timedelta(days=1), timezone) for due, _ in indicator.phases]

    def covers(self, unit: str) -> bool:
        return self.units is None or unit in self.units

    def overlaps(self, start_ms: int, end_ms: int) -> bool:
        return start_ms < self.end_ms and self.start_ms < end_ms


def _local_midnight(day: date, zone: ZoneInfo) -> int:
    return int(datetime.combine(day, time(), zone).timestamp() * 1000)


def compile_programmes(catalog: Catalog) -> dict[str, ProgrammeDef]:
    zone = ZoneInfo(catalog.timezone)
    return {
        pid: ProgrammeDef(
            programme=pid,
            name=p.name,
            owner=p.owner,
            units=frozenset(p.units) if p.units is not None else None,
            start_ms=_local_midnight(p.start, zone),
            end_ms=_local_midnight(p.end + timedelta(days=1), zone),
            improves=tuple((k.service, k.touchpoint, k.kpi) for k in p.improves),
            indicators={
                iid: IndicatorDef(
                    iid,
                    indicator.direction == "lower",
                    tuple((phase.due, phase.target) for phase in indicator.phases),
                )
                for iid, indicator in p.indicators.items()
            },
        )
        for pid, p in catalog.programmes.items()
    }


def check_update(programmes: Mapping[str, ProgrammeDef], event: Mapping[str, Any]) -> None:
    """A validated programme_update must name a programme and indicator of the catalog."""
    programme = programmes.get(event["programme"])
    if programme is None:
        raise InvalidEvent("unknown_programme", "programme_update.programme is not in the catalog")
    if event["indicator"] not in programme.indicators:
        raise InvalidEvent(
            "unknown_indicator", "programme_update.indicator is not one of the programme's"
        )


def target_in_force(indicator: IndicatorDef, last_day: date) -> float:
    """The target of the phase with the earliest due date on or after `last_day` (the
    window's last local day); past the last phase, the last target."""
    for due, target in indicator.phases:
        if due >= last_day:
            return target
    return indicator.phases[-1][1]


def attainment(lower_is_better: bool, value: float | None, target: float) -> float | None:
    """value / target, or target / value when lower is better; None without a value or when
    the divisor is 0."""
    if value is None:
        return None
    numerator, divisor = (target, value) if lower_is_better else (value, target)
    return numerator / divisor if divisor else None


class ProgrammeValues:
    """A unit's indicator snapshots per (programme, indicator): (time, value), time-ordered."""

    def __init__(self) -> None:
        self._times: dict[tuple[str, str], list[int]] = {}
        self._values: dict[tuple[str, str], list[float]] = {}

    def add(self, programme: str, indicator: str, time_ms: int, value: float) -> None:
        key = (programme, indicator)
        times = self._times.setdefault(key, [])
        values = self._values.setdefault(key, [])
        i = bisect_right(times, time_ms)
        if i and times[i - 1] == time_ms:  # the same moment again: the later one stands
            values[i - 1] = value
            return
        times.insert(i, time_ms)
        values.insert(i, value)

    def at(self, programme: str, indicator: str, end_ms: int) -> float | None:
        """The latest value before `end_ms` (a window's exclusive end), or None."""
        latest = self.latest(programme, indicator, end_ms)
        return latest[1] if latest is not None else None

    def latest(self, programme: str, indicator: str, end_ms: int) -> tuple[int, float] | None:
        """(time, value) of the latest snapshot before `end_ms`, or None."""
        times = self._times.get((programme, indicator))
        if not times:
            return None
        i = bisect_right(times, end_ms - 1)
        return (times[i - 1], self._values[(programme, indicator)][i - 1]) if i else None

    def snapshots(self) -> list[list[Any]]:
        """[programme, indicator, [[time, value], ...]] per indicator (persisted as JSON)."""
        return [
            [*key, [[t, v] for t, v in zip(times, self._values[key], strict=True)]]
            for key, times in self._times.items()
        ]

    def load(self, rows: Iterable[list[Any]]) -> None:
        for programme, indicator, pairs in rows:
            for time_ms, value in pairs:
                self.add(programme, indicator, time_ms, value)

    def prune(self, before_ms: int) -> None:
        """Forget snapshots superseded before `before_ms` (the oldest window still kept)."""
        for key, times in self._times.items():
            i = bisect_right(times, before_ms - 1)
            if i > 1:
                del times[: i - 1]
                del self._values[key][: i - 1]

    def __bool__(self) -> bool:
        return bool(self._times)


def baseline_start(calendar: LocalCalendar, kind: WindowKind, programme: ProgrammeDef) -> int:
    """The start of the same kind of window just before the programme's start."""
    return calendar.window_start(kind, programme.start_ms - 1)


def programme_records(
    programmes: Iterable[ProgrammeDef],
    *,
    unit: str,
    window: WindowKind,
    window_start_ms: int,
    calendar: LocalCalendar,
    values: ProgrammeValues,
    points: Mapping[RecordKey, float | None],
    baseline: Callable[[ProgrammeDef], Mapping[RecordKey, float | None] | None],
    means: Mapping[MeanKey, float] | None,
    baseline_means: Callable[[ProgrammeDef], Mapping[MeanKey, float] | None],
    version: str,
) -> list[Record]:
    """A unit window's programme records. `points`: the unit's KPI points in this window by
    record key; `baseline(p)`: the same before programme p's start (None: unknown); `means`,
    `baseline_means(p)`: the network means of the window and of p's baseline window."""
    end_ms = calendar.window_end(window, window_start_ms)
    last_day = datetime.fromtimestamp((end_ms - 1) / 1000, calendar.zone).date()
    iso = calendar.isoformat(window_start_ms)
    out: list[Record] = []
    for programme in programmes:
        if not programme.covers(unit) or not programme.overlaps(window_start_ms, end_ms):
            continue
        before = baseline(programme)
        before_means = baseline_means(programme)
        effect = []
        for service, touchpoint, kpi in programme.improves:
            key: RecordKey = ("kpi", unit, service, touchpoint, kpi)
            mean_key: MeanKey = ("kpi", service, touchpoint, kpi)
            effect.append(
                {
                    "service": service,
                    "touchpoint": touchpoint,
                    "kpi": kpi,
                    "unit_delta": _delta(points.get(key), before.get(key) if before else None),
                    "network_delta": _delta(
                        means.get(mean_key) if means else None,
                        before_means.get(mean_key) if before_means else None,
                    ),
                }
            )
        for indicator in programme.indicators.values():
            value = values.at(programme.programme, indicator.indicator, end_ms)
            target = target_in_force(indicator, last_day)
            attained = attainment(indicator.lower_is_better, value, target)
            out.append(
                {
                    "level": PROGRAMME_LEVEL,
                    "window": window,
                    "window_start": iso,
                    "window_start_ms": window_start_ms,
                    "unit": unit,
                    "programme": programme.programme,
                    "indicator": indicator.indicator,
                    "owner": programme.owner,
                    "value": value,
                    "target": target,
                    "attainment": attained,
                    "on_track": None if attained is None else attained >= 1.0,
                    "effect": effect,
                    "catalog_version": version,
                }
            )
    return out


def programme_key(record: Mapping[str, Any]) -> str:
    """The compacted topic's key of a programme record."""
    return "/".join(
        str(record[k]) for k in ("programme", "unit", "indicator", "window", "window_start")
    )


def _delta(now: float | None, before: float | None) -> float | None:
    return now - before if now is not None and before is not None else None
