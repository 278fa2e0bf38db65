"""The scoring state's data: what a partition holds per window and per unit, and its counts.

The behaviour lives elsewhere: `fold` (the hot loop), `watermark`, `expiry` and
`persistence` (the changelog format) of `streams.scoring`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.core.accumulators import Accumulators
from streams.core.programmes import ProgrammeValues
from streams.core.subscriber_base import SubscriberBases
from streams.scoring.programme_alerts import ProgrammeMachine
from streams.scoring.rolling import UnitRolling

WindowKey = tuple[str, str, int]  # (unit, kind, start_ms)


@dataclass(frozen=True)
class FoldConfig:
    timezone: str
    allowed_lateness_ms: int
    rolling_span_ms: int
    rolling_slice_ms: int
    source_idle_ms: int = 10_000
    behind_source_idle_ms: int = 180_000
    # a source only the group view reports behind (read by another ingest, or by none
    # during a rebalance): held for a rebalance's length, not longer (that view can be stale)
    group_behind_idle_ms: int = 30_000
    # distinct units this partition admits (None: any); entries of more are dead-lettered.
    # Decided here, where the unit's state lives and is persisted, so every ingest and every
    # restart agrees on which units are in.
    max_units: int | None = None


@dataclass(slots=True)
class Window:
    accumulators: Accumulators = field(default_factory=dict)
    guard: dict[str, int] = field(default_factory=dict)
    revision: int = 0
    final: bool = False
    newest_ingest_ms: int = 0
    changed: bool = False  # since the last publication
    unsaved: bool = True  # since the last flush
    persisted: bool = False  # in the table: a tombstone is needed when it goes


@dataclass
class UnitState:
    guard: dict[str, int] = field(default_factory=dict)
    # snapshots (subscriber bases, programme indicators), persisted together under one guard
    bases: SubscriberBases = field(default_factory=SubscriberBases)
    programmes: ProgrammeValues = field(default_factory=ProgrammeValues)
    base_guard: dict[str, int] = field(default_factory=dict)
    bases_unsaved: bool = False
    # event_id -> (source, offset); ids not flushed yet are also in `fresh`
    seen: dict[str, tuple[str, int]] = field(default_factory=dict)
    fresh: list[tuple[str, str, int, int]] = field(default_factory=list)  # id, src, off, time
    chunks: dict[int, tuple[int, list[str]]] = field(default_factory=dict)  # newest time, ids
    next_chunk: int = 0
    slices: dict[int, Accumulators] = field(default_factory=dict)  # rolling slices by start
    slices_unsaved: bool = False  # a slice changed since the last flush
    # Slices loaded from the table, by start: the offsets their value held (an entry at or
    # below them is in the slice already, when a flush was cut after the slices value).
    # Slices opened since hold only entries the unit's guard let through.
    slice_guards: dict[int, dict[str, int]] = field(default_factory=dict)
    # The windows the unit's last event went to (most events of a unit fall in the same
    # day, and often the same slice, as its previous one): [day start, day end) with its
    # day and month windows, and the slice's start and accumulators.
    day_from: int = 0
    day_to: int = 0
    day_window: Window = field(default_factory=Window)  # placeholders until then
    month_window: Window = field(default_factory=Window)
    slice_from: int = -1
    slice_accumulators: Accumulators = field(default_factory=dict)
    oldest_slice: int = -1  # no slice it holds starts before this (-1: it never held one)
    calendar: set[WindowKey] = field(default_factory=set)  # its calendar windows
    rolling: UnitRolling | None = None  # alert evaluation state
    # (kind, start) of a window just before a programme's start -> the points then of the
    # KPIs programmes improve (service, touchpoint, kpi): the baseline of their `effect`
    baselines: dict[tuple[str, int], dict[tuple[str, str, str], float | None]] = field(
        default_factory=dict
    )
    # (programme, indicator) -> its programme_behind alert machine
    programme_alerts: dict[tuple[str, str], ProgrammeMachine] = field(default_factory=dict)


@dataclass
class Counts:
    scored: int = 0
    duplicates: int = 0
    late: int = 0
    replayed: int = 0  # entries skipped by a guard: re-deliveries, never counted twice
    unit_cap: int = 0  # entries of units past the cap (dead-lettered)
