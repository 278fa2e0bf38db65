"""The scoring state of one envelope partition, and how envelopes fold into it (no Kafka).

Exactly-once on an at-least-once stream comes from idempotent state (the embedded broker has
no transactions; Kafka transactions would also not cover our own replays):

- Per unit, a *guard*: the highest source offset applied per source partition. An entry at
  or below it is a replay (an envelope re-read after a crash, or re-produced by the ingest
  after its own restart) and is skipped whole.
- Every stored value (window, subscriber base) carries its own guard too, so a flush that
  was cut half-way is completed on replay without counting anything twice.
- The control value (watermark, guards, counters) is always written last in a flush. The
  changelog of a partition keeps write order, so whatever survives a crash is a prefix: the
  control never claims more than the windows hold.
- Duplicates (same `event_id`, other source coordinates) are recognised over the lateness
  horizon through a seen-id index persisted in write-once chunks.

The watermark of a partition is the minimum, over the input partitions (sources) feeding it
that were active in the last `source_idle_ms` of wall-clock time, of the newest event time
each has delivered; it never goes back. Several ingests (one per worker) and topics of very
different volume feed one partition at their own pace, so the newest event seen would let a
fast source declare a slow one's events late. A source whose last envelope said it still had
a backlog on the broker stays in the minimum for `behind_source_idle_ms` instead: a
rebalance or a crashed worker silences it for longer than the idle time, and the other
sources' event time must not run ahead of its unread records. An event older than the
watermark minus the allowed lateness is late.

Windows: `day` and `month` (local calendar, published), kept in `windows`; and per unit the
UTC-aligned slices of the rolling window, for alerts and live panels (plain accumulators: a
catch-up opens one a minute per unit, most holding an event or two).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Final

import orjson

from streams.contract.envelope import Row
from streams.core.accumulators import Accumulators, add, merge, signed_add
from streams.core.alerts import AlertState
from streams.core.subscriber_base import SubscriberBases
from streams.core.windows import MERGED_KINDS, LocalCalendar, is_final, slice_start_ms
from streams.scoring.alerting import AlertEvaluator, UnitRolling
from streams.scoring.outbox import Outbox, late_record, unit_cap_record

_EVENT_ID, _EVENT_TIME = itemgetter(0), itemgetter(3)  # of a seen-id row
SEEN_CHUNK_IDS: Final = 2_000  # ~120 KB of JSON per seen-id chunk at most
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

    def dump(self) -> bytes:
        return orjson.dumps(
            {
                "a": [[k, *v] for k, v in self.accumulators.items()],
                "g": self.guard,
                "r": self.revision,
                "f": self.final,
                "i": self.newest_ingest_ms,
                "c": self.changed,
            }
        )

    @classmethod
    def load(cls, value: bytes) -> Window:
        data = _decoded(value)
        return cls(
            accumulators={row[0]: row[1:] for row in data["a"]},
            guard=data["g"],
            revision=data["r"],
            final=data["f"],
            newest_ingest_ms=data["i"],
            changed=data["c"],
            unsaved=False,
            persisted=True,
        )


@dataclass
class UnitState:
    guard: dict[str, int] = field(default_factory=dict)
    bases: SubscriberBases = field(default_factory=SubscriberBases)
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
    own_keys: set[int] = field(default_factory=set)  # slices kept under keys of their own
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
    calendar: set[WindowKey] = field(default_factory=set)  # its day and month windows
    rolling: UnitRolling | None = None  # alert evaluation state


@dataclass
class Counts:
    scored: int = 0
    duplicates: int = 0
    late: int = 0
    replayed: int = 0  # entries skipped by a guard: re-deliveries, never counted twice
    unit_cap: int = 0  # entries of units past the cap (dead-lettered)


class PartitionState:
    """State of one partition of the envelope topic: every unit routed to it."""

    def __init__(self, partition: int, config: FoldConfig) -> None:
        self.partition = partition
        self.config = config
        self.calendar = LocalCalendar(config.timezone)
        self.watermark_ms: int | None = None
        # source -> [newest event time, wall-clock ms when it last delivered, 1 if behind]
        self.sources: dict[str, list[int]] = {}
        self.counts = Counts()
        self.units: dict[str, UnitState] = {}
        self.windows: dict[WindowKey, Window] = {}
        self.deleted: set[str] = set()  # table keys to tombstone at the next flush
        self.inhibitions: dict[tuple[str, str], bool] = {}  # (unit, service) -> service firing
        # alert transitions, late events and dead letters until their send is acknowledged
        self.outbox = Outbox()
        # per source, the newest offset of an entry refused for the unit cap (such a unit
        # has no state, hence no guard of its own: a replay must not count it twice)
        self.refused: dict[str, int] = {}
        self.newest_ingest_ms = 0
        # The offset of the last envelope folded in: persisted with the control value, so a
        # worker that recovers this state resumes the envelope partition right after it,
        # whatever offset the consumer group committed (see `resume_position`).
        self.envelope_offset = -1

    # -- folding -----------------------------------------------------------------------

    def refresh_watermark(self, now_ms: int) -> None:
        """Minimum newest time over the active sources; with none active, everything sent
        has been seen, so the newest time of all."""
        if not self.sources:
            return
        since = (
            now_ms - self.config.source_idle_ms,  # 0: delivering, or caught up
            now_ms - self.config.behind_source_idle_ms,  # 1: its ingest reports a backlog
            now_ms - self.config.group_behind_idle_ms,  # 2: the group view reports one
        )
        newest = [t for t, seen, behind in self.sources.values() if seen >= since[behind]]
        candidate = min(newest) if newest else max(t for t, _, _ in self.sources.values())
        if self.watermark_ms is None or candidate > self.watermark_ms:
            self.watermark_ms = candidate

    def apply(
        self,
        entries: Iterable[Row],
        now_ms: int,
        behind: Iterable[str] = (),
        caught_up: Iterable[str] = (),
        group_behind: Iterable[str] = (),
    ) -> None:
        """Fold one envelope's entries (rows as `read_envelope` gives them, or `Entry`s);
        the watermark moves between envelopes. `behind` and `caught_up`: the sending
        ingest's sources with and without records left to read."""
        self.refresh_watermark(now_ms)
        first_oldest = None
        if self.watermark_ms is None:  # the partition's first envelope
            entries = list(entries)
            first_oldest = min((e[4] for e in entries), default=None)
        # the watermark moves between envelopes only: one horizon for the whole envelope
        lateness = self.config.allowed_lateness_ms
        horizon = None if self.watermark_ms is None else self.watermark_ms - lateness
        units = self.units
        sources = self.sources
        counts = self.counts
        scored = replayed = 0
        newest_ingest_ms = self.newest_ingest_ms
        fold, fold_base = self._fold, self._fold_base
        # a row unpacked once: no Entry object, no attribute lookup per field
        for row in entries:
            unit, source, offset, event_id, event_time, ingest_ms, etype, service, payload = row
            state = units.get(unit)
            if state is None:
                state = self._admit(unit, source, offset, row, now_ms)
                if state is None:
                    continue
            if offset <= state.guard.get(source, -1):
                replayed += 1
                continue
            seen_from = sources.get(source)
            if seen_from is None:
                sources[source] = [event_time, now_ms, 0]
            else:
                if event_time > seen_from[0]:
                    seen_from[0] = event_time
                seen_from[1] = now_ms
            state.guard[source] = offset
            seen = state.seen.get(event_id)
            if seen is not None and (seen[0] != source or seen[1] != offset):
                counts.duplicates += 1
                continue
            if horizon is not None and event_time < horizon:
                counts.late += 1
                self.outbox.add("late", late_record(row, horizon + lateness, lateness))
                continue
            if seen is None:
                state.seen[event_id] = (source, offset)
                state.fresh.append((event_id, source, offset, event_time))
            scored += 1
            if ingest_ms > newest_ingest_ms:
                newest_ingest_ms = ingest_ms
            if etype == "subscriber_base":
                fold_base(unit, state, source, offset, event_time, ingest_ms, service, payload)
            else:
                fold(unit, state, source, offset, event_time, ingest_ms, payload)
        counts.scored += scored
        counts.replayed += replayed
        self.newest_ingest_ms = newest_ingest_ms
        self._track_backlogs(behind, caught_up, now_ms, group_behind, first_oldest)
        self.refresh_watermark(now_ms)

    def _admit(
        self, unit: str, source: str, offset: int, row: Row, now_ms: int
    ) -> UnitState | None:
        """The state of a unit seen for the first time, or None past the unit cap (its
        entry is dead-lettered once, a replay of it skipped)."""
        cap = self.config.max_units
        if cap is None or len(self.units) < cap:
            state = self.units[unit] = UnitState()
            return state
        if offset > self.refused.get(source, -1):
            self.refused[source] = offset
            self.counts.unit_cap += 1
            self.outbox.add("dead", unit_cap_record(row, cap, now_ms))
        else:
            self.counts.replayed += 1
        return None

    def _track_backlogs(
        self,
        behind: Iterable[str],
        caught_up: Iterable[str],
        now_ms: int,
        group_behind: Iterable[str] = (),
        first_oldest: int | None = None,
    ) -> None:
        """A source with records left holds the watermark even before it delivered anything
        here (its events may be hours behind the others'), for as long as its ingest keeps
        reporting it; a caught-up one is released after the usual idle time. Such a source
        is held where the watermark is, or, on the partition's first envelope (no watermark
        yet), at that envelope's oldest event: one batch of history can span hours, and the
        silent source's records may start as early as the envelope's."""
        sources = self.sources
        hold = self.watermark_ms
        if hold is None:
            hold = first_oldest
        if hold is None and sources:
            hold = min(newest for newest, _, _ in sources.values())
        for source in behind:
            seen_from = sources.get(source)
            if seen_from is None:
                if hold is not None:
                    sources[source] = [hold, now_ms, 1]
            else:
                seen_from[1] = now_ms
                seen_from[2] = 1
        for source in group_behind:
            seen_from = sources.get(source)
            if seen_from is None:
                if hold is not None:
                    sources[source] = [hold, now_ms, 2]
            elif seen_from[2] != 1:  # its own ingest's word counts for more
                seen_from[1] = now_ms
                seen_from[2] = 2
        for source in caught_up:
            seen_from = sources.get(source)
            if seen_from is not None:
                seen_from[2] = 0

    def _fold(
        self,
        unit: str,
        state: UnitState,
        source: str,
        offset: int,
        event_time: int,
        ingest_ms: int,
        payload: list[Any],
    ) -> None:
        # the hot loop of the fold: once per scored event, into 3 windows
        if not state.day_from <= event_time < state.day_to:
            self._find_calendar(unit, state, event_time)
        slice_ms = self.config.rolling_slice_ms
        slice_from = event_time - event_time % slice_ms
        if slice_from != state.slice_from:
            self._find_slice(unit, state, slice_from)
        # The wire's flat [kpi, a, b, kpi, a, b, ...] as (kpi, a, b) triples, once: parsing
        # it is cheaper than a list per contribution, iterating triples cheaper than zips.
        if payload and type(payload[0]) is not list:
            triples = iter(payload)
            payload = list(zip(triples, triples, triples, strict=False))
        targets = []  # the accumulators this event goes to
        for window in (state.day_window, state.month_window):
            guard = window.guard
            if offset <= guard.get(source, -1):
                continue  # already in this window: a flush was cut after writing it
            guard[source] = offset
            window.changed = window.unsaved = True
            if ingest_ms > window.newest_ingest_ms:
                window.newest_ingest_ms = ingest_ms
            targets.append(window.accumulators)
        slice_guard = state.slice_guards.get(slice_from) if state.slice_guards else None
        # a slice loaded after a reload may hold the entry already
        if slice_guard is None or offset > slice_guard.get(source, -1):
            state.slices_unsaved = True
            rolling = state.rolling
            # only a slice the rolling window already holds (a late event) or the unit's
            # first slice has anything to do there
            if rolling is None or slice_from < rolling.boundary:
                self._into_rolling(state, slice_from, payload)
            targets.append(state.slice_accumulators)
        for accumulators in targets:
            # `streams.core.accumulators.add`, inlined (once per event and window)
            for index, a, b in payload:
                acc = accumulators.get(index)
                if acc is None:
                    accumulators[index] = [1.0, a, b]
                else:
                    acc[0] += 1.0
                    acc[1] += a
                    acc[2] += b

    def _window(self, state: UnitState, key: WindowKey) -> Window:
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = Window()
            state.calendar.add(key)
        return window

    def _find_calendar(self, unit: str, state: UnitState, event_time: int) -> None:
        day, month = self.calendar.starts(event_time)
        state.day_from, state.day_to = day, self.calendar.window_end("day", day)
        state.day_window = self._window(state, (unit, "day", day))
        state.month_window = self._window(state, (unit, "month", month))
        self._merged_windows(unit, state, event_time)

    def _merged_windows(self, unit: str, state: UnitState, event_time: int) -> None:
        """The quarter and year windows of an event: no accumulators of their own (the
        publisher merges their months), only what is published of them."""
        for kind in MERGED_KINDS:
            self._window(state, (unit, kind, self.calendar.window_start(kind, event_time)))

    def _find_slice(self, unit: str, state: UnitState, slice_from: int) -> None:
        state.slice_from = slice_from
        accumulators = state.slices.get(slice_from)
        if accumulators is None:
            accumulators = state.slices[slice_from] = {}
            if not 0 <= state.oldest_slice <= slice_from:
                state.oldest_slice = slice_from
        state.slice_accumulators = accumulators

    def _fold_base(
        self,
        unit: str,
        state: UnitState,
        source: str,
        offset: int,
        event_time: int,
        ingest_ms: int,
        service: str,
        subscribers: Any,
    ) -> None:
        """A subscriber_base snapshot: no KPI contribution, but the rate KPIs of its day
        and month windows, and of every later window, change."""
        day, month = self.calendar.starts(event_time)
        self._merged_windows(unit, state, event_time)
        for key in ((unit, "day", day), (unit, "month", month)):
            window = self._window(state, key)
            if offset <= window.guard.get(source, -1):
                continue
            window.guard[source] = offset
            window.changed = window.unsaved = True
            if ingest_ms > window.newest_ingest_ms:
                window.newest_ingest_ms = ingest_ms
        if offset > state.base_guard.get(source, -1):
            state.base_guard[source] = offset
            state.bases.add(unit, service, event_time, int(subscribers))
            state.bases_unsaved = True
            for key in state.calendar:  # rate KPIs of later windows change
                end = self.calendar.window_end(key[1], key[2])  # type: ignore[arg-type]
                if end > event_time:
                    self.windows[key].changed = True

    def _into_rolling(self, state: UnitState, slice_start: int, contributions: list[Any]) -> None:
        """A late event in a slice the rolling window already holds goes into its sums."""
        rolling = state.rolling
        if rolling is None:
            first = slice_start_ms(slice_start, self.config.rolling_slice_ms)
            state.rolling = UnitRolling(boundary=first)
            return
        if not rolling.boundary - self.config.rolling_span_ms <= slice_start < rolling.boundary:
            return
        rolling.counts = None  # the evaluator recounts and re-scores at the next boundary
        add(rolling.sums, contributions)

    def evaluate_alerts(self, evaluator: AlertEvaluator) -> None:
        """Step the alert machines through every slice boundary the watermark passed; the
        records of their transitions go to the outbox."""
        if self.watermark_ms is None:
            return
        target = self.watermark_ms - self.watermark_ms % self.config.rolling_slice_ms
        for unit, state in self.units.items():
            if state.rolling is None or state.rolling.boundary >= target:
                continue
            bases = self.bases_at(unit, self.watermark_ms + 1)
            self.outbox.extend(
                "alert",
                evaluator.advance(
                    unit, state.rolling, state.slices, bases, self.watermark_ms, self.inhibitions
                ),
            )

    def acknowledge(
        self, evaluator: AlertEvaluator, unit: str, index: int, by: str, now_ms: int
    ) -> bool:
        """Mark a firing alert acknowledged; its record goes to the outbox. False: nothing
        to acknowledge (no such alert firing, or acknowledged already)."""
        state = self.units.get(unit)
        if state is None or state.rolling is None:
            return False
        records = evaluator.acknowledge(unit, state.rolling, index, by, now_ms)
        self.outbox.extend("alert", records)
        return bool(records)

    def advance_idle(self, elapsed_ms: int) -> None:
        """An idle partition's watermark follows the wall clock, so its windows still close."""
        if self.watermark_ms is not None and elapsed_ms > 0:
            self.watermark_ms += elapsed_ms
            for source in self.sources.values():  # idle sources must not pull it back
                source[0] = max(source[0], self.watermark_ms)

    # -- windows ----------------------------------------------------------------------

    def window_end(self, key: WindowKey) -> int:
        _, kind, start = key
        if kind == "slice":
            return start + self.config.rolling_slice_ms
        return self.calendar.window_end(kind, start)  # type: ignore[arg-type]

    def is_closed(self, key: WindowKey) -> bool:
        """The watermark passed the window's end plus the allowed lateness."""
        return is_final(self.watermark_ms, self.window_end(key), self.config.allowed_lateness_ms)

    def accumulators_of(self, key: WindowKey) -> Accumulators:
        """A calendar window's accumulators: its own, or for a quarter or year the merge of
        its months this state holds (every month of a kept year is kept: see `expire`)."""
        if key[1] not in MERGED_KINDS:
            return self.windows[key].accumulators
        merged: Accumulators = {}
        for window in self.months_of(key):
            merge(merged, window.accumulators)
        return merged

    def months_of(self, key: WindowKey) -> list[Window]:
        """The month windows this state holds of a quarter or year window."""
        unit, kind, start = key
        months = self.calendar.months_of(kind, start)  # type: ignore[arg-type]
        return [w for m in months if (w := self.windows.get((unit, "month", m))) is not None]

    def bases_at(self, unit: str, end_ms: int) -> dict[str, float]:
        state = self.units.get(unit)
        return state.bases.at(unit, end_ms) if state else {}

    def expire(self) -> list[WindowKey]:
        """Forget what no event can change any more and nothing will read again.

        A final calendar window is kept until its successor is final too (its scores give
        the successor's `delta_prev`), and a month as long as its year is kept (quarters and
        years are merges of their months); slices go once they left the rolling span and the
        lateness horizon; seen-id chunks go with the lateness horizon.
        """
        watermark = self.watermark_ms
        if watermark is None:
            return []
        removed: list[WindowKey] = []
        horizon = watermark - self.config.allowed_lateness_ms
        self.expire_slices()
        oldest_start: dict[str, int] = {}
        for unit, state in self.units.items():
            for key in list(state.calendar):
                window = self.windows[key]
                if window.final and not window.unsaved:
                    successor = (unit, key[1], self.window_end(key))
                    if self.is_closed(successor) and not self._in_kept_year(key):
                        del self.windows[key]
                        state.calendar.discard(key)
                        state.day_to = 0  # its windows are looked up again
                        removed.append(key)
                        if window.persisted:
                            self.deleted.add(window_table_key(self.partition, key))
                        continue
                if key[2] < oldest_start.get(unit, key[2] + 1):
                    oldest_start[unit] = key[2]
        for unit, state in self.units.items():
            for chunk, (newest, ids) in list(state.chunks.items()):
                if newest < horizon:
                    del state.chunks[chunk]
                    for event_id in ids:
                        state.seen.pop(event_id, None)
                    self.deleted.add(f"{self.partition}/d/{unit}/{chunk}")
        # A snapshot matters while it is the latest before the end of a window still kept.
        for unit, state in self.units.items():
            if unit in oldest_start:
                state.bases.prune(oldest_start[unit])
        return removed

    def _in_kept_year(self, key: WindowKey) -> bool:
        unit, kind, start = key
        if kind != "month":
            return False
        return (unit, "year", self.calendar.window_start("year", start)) in self.windows

    def expire_slices(self) -> None:
        """Drop the slices that left a unit's rolling window (the alert machines already
        stepped past them). Run before every flush: during a catch-up most slices come and
        go between two flushes and are never written at all."""
        span = self.config.rolling_span_ms
        slice_ms = self.config.rolling_slice_ms
        watermark = self.watermark_ms
        if watermark is None:
            return
        for unit, state in self.units.items():
            slices = state.slices
            if not slices:
                continue
            end = state.rolling.boundary if state.rolling is not None else watermark
            oldest = min(end, watermark) - span
            # slice by slice from the oldest it may hold: each start is passed once
            start = state.oldest_slice if state.oldest_slice >= 0 else min(slices)
            while start + slice_ms <= oldest:
                if slices.pop(start, None) is not None:
                    if state.slice_guards:
                        state.slice_guards.pop(start, None)
                    if start in state.own_keys:
                        state.own_keys.discard(start)
                        self.deleted.add(window_table_key(self.partition, (unit, "slice", start)))
                    if start == state.slice_from:
                        state.slice_from = -1
                    if not slices:
                        break
                start += slice_ms
            state.oldest_slice = start if slices else -1  # -1: the next slice opened sets it

    # -- persistence ------------------------------------------------------------------

    def flush(self) -> list[tuple[str, bytes | None]]:
        """Table writes since the last flush, in a safe order: the control value last."""
        p = self.partition
        writes: list[tuple[str, bytes | None]] = []
        units = self.units
        for key, window in self.windows.items():
            if window.unsaved:
                window.unsaved = False
                writes.append((window_table_key(p, key), window.dump()))
                window.persisted = True
        for unit, state in units.items():
            if state.slices_unsaved:
                writes.append((slices_key(p, unit), dump_slices(state)))
                state.slices_unsaved = False
            # seen ids in chunks of bounded size (a fast replay brings many per flush; a
            # changelog message must stay well under the broker's size limit)
            for first in range(0, len(state.fresh), SEEN_CHUNK_IDS):
                rows = state.fresh[first : first + SEEN_CHUNK_IDS]
                chunk = state.next_chunk
                state.next_chunk += 1
                state.chunks[chunk] = (max(map(_EVENT_TIME, rows)), list(map(_EVENT_ID, rows)))
                writes.append((f"{p}/d/{unit}/{chunk}", orjson.dumps(rows)))
            state.fresh = []
            if state.bases_unsaved:
                snapshots = state.bases.snapshots(unit)
                writes.append(
                    (f"{p}/b/{unit}", orjson.dumps({"s": snapshots, "g": state.base_guard}))
                )
                state.bases_unsaved = False
        writes.extend((key, None) for key in sorted(self.deleted))
        self.deleted.clear()
        writes.append((control_key(p), self._dump_control()))
        return writes

    def _dump_control(self) -> bytes:
        return orjson.dumps(
            {
                "w": self.watermark_ms,
                "s": {
                    source: [newest, behind] for source, (newest, _, behind) in self.sources.items()
                },
                "n": [
                    self.counts.scored,
                    self.counts.duplicates,
                    self.counts.late,
                    self.counts.replayed,
                    self.counts.unit_cap,
                ],
                "u": {
                    u: {"g": s.guard, "c": s.next_chunk, "r": _dump_rolling(s.rolling)}
                    for u, s in self.units.items()
                },
                "o": self.outbox.dump(),
                "x": self.refused,
                "e": self.envelope_offset,
            }
        )

    @classmethod
    def load(
        cls,
        partition: int,
        config: FoldConfig,
        items: Iterable[tuple[str, bytes]],
        now_ms: int,
    ) -> PartitionState:
        """Rebuild from the table's values of this partition (after recovery)."""
        state = cls(partition, config)
        prefix = f"{partition}/"
        chunks: list[tuple[str, bytes]] = []
        bases: list[tuple[str, bytes]] = []
        slice_sets: list[tuple[str, bytes]] = []
        own_slices: list[tuple[str, int, Window]] = []  # slices under keys of their own
        for key, value in items:
            if not key.startswith(prefix) or value is None:
                continue
            parts = key.split("/")
            if parts[1] == "c":
                control = _decoded(value)
                state.watermark_ms = control["w"]
                # sources count as active from the reload on
                state.sources = {
                    k: [v[0], now_ms, v[1]] if isinstance(v, list) else [v, now_ms, 0]
                    for k, v in control["s"].items()
                }
                state.counts = Counts(*control["n"])
                state.outbox = Outbox.load(control["o"])
                state.refused = control["x"]
                state.envelope_offset = control["e"]
                for unit, data in control["u"].items():
                    state.units[unit] = UnitState(
                        guard=data["g"], next_chunk=data["c"], rolling=_load_rolling(data["r"])
                    )
            elif parts[1] == "w" and parts[3] == "slice":
                own_slices.append((parts[2], int(parts[4]), Window.load(value)))
            elif parts[1] == "w":
                window_key = (parts[2], parts[3], int(parts[4]))
                state.windows[window_key] = Window.load(value)
            elif parts[1] == "s":
                slice_sets.append((parts[2], value))
            elif parts[1] == "d":
                chunks.append((key, value))
            elif parts[1] == "b":
                bases.append((key, value))
        # A unit's slices value is newer than any slice under a key of its own (how slices
        # were kept before session 7); such a key is still tombstoned when its slice goes.
        for unit, start, window in own_slices:
            unit_state = state.units.setdefault(unit, UnitState())
            unit_state.slices[start] = window.accumulators
            unit_state.slice_guards[start] = window.guard
            unit_state.own_keys.add(start)
        for unit, value in slice_sets:
            data = _decoded(value)
            unit_state = state.units.setdefault(unit, UnitState())
            for start, rows in data["s"]:
                unit_state.slices[start] = {row[0]: row[1:] for row in rows}
                unit_state.slice_guards[start] = dict(data["g"])
        for key, value in chunks:
            _, _, unit, chunk_text = key.split("/")
            chunk = int(chunk_text)
            unit_state = state.units.setdefault(unit, UnitState())
            rows = _decoded(value)
            for event_id, source, offset, _ in rows:
                unit_state.seen[event_id] = (source, offset)
            unit_state.chunks[chunk] = (max(r[3] for r in rows), [r[0] for r in rows])
            # a chunk written after the control value: its number must not be reused
            unit_state.next_chunk = max(unit_state.next_chunk, chunk + 1)
        for unit, kind, start in state.windows:
            state.units.setdefault(unit, UnitState()).calendar.add((unit, kind, start))
        for unit_state in state.units.values():  # the rolling sums come back from the slices
            if unit_state.slices:
                unit_state.oldest_slice = min(unit_state.slices)
            rolling = unit_state.rolling
            if rolling is not None:
                span_start = rolling.boundary - config.rolling_span_ms
                for start, accumulators in unit_state.slices.items():
                    if span_start <= start < rolling.boundary:
                        signed_add(rolling.sums, accumulators, 1.0)
        for key, value in bases:
            unit = key.split("/")[2]
            unit_state = state.units.setdefault(unit, UnitState())
            data = _decoded(value)
            unit_state.base_guard = data["g"]
            for service, snapshots in data["s"].items():
                for time_ms, count in snapshots:
                    unit_state.bases.add(unit, service, time_ms, count)
        return state


def _decoded(value: Any) -> Any:
    """A stored value: our JSON bytes, or (after a changelog recovery, where Faust applies
    its JSON codec to the raw bytes) the already decoded value."""
    return value if isinstance(value, (dict, list)) else orjson.loads(value)


def _dump_rolling(rolling: UnitRolling | None) -> Any:
    if rolling is None:
        return None
    machines = {
        str(i): [m.state, m.pending_since_ms, m.started_at_ms, m.acknowledged_by]
        for i, m in rolling.machines.items()
    }
    return {"b": rolling.boundary, "m": machines}


def _load_rolling(data: Any) -> UnitRolling | None:
    if data is None:
        return None
    machines = {int(i): AlertState(*m) for i, m in data["m"].items()}
    return UnitRolling(boundary=data["b"], machines=machines)


def slices_key(partition: int, unit: str) -> str:
    return f"{partition}/s/{unit}"


def dump_slices(state: UnitState) -> bytes:
    """A unit's rolling slices in one value (one changelog message per unit and flush, not
    one per slice and a tombstone when it leaves: a catch-up crosses a slice a minute).
    Their guard is the unit's: every entry the unit applied is in a slice it still holds,
    or in one that left the rolling window, which nothing reads again."""
    return orjson.dumps(
        {
            "g": state.guard,
            "s": [
                [start, [[k, *v] for k, v in accumulators.items()]]
                for start, accumulators in state.slices.items()
            ],
        }
    )


def control_key(partition: int) -> str:
    return f"{partition}/c"


def resume_position(control: Any) -> int:
    """Where a worker recovering a partition's state resumes its envelopes: right after the
    last envelope that state holds (0 without a control value). Faust resumes at the consumer
    group's committed offset, which the acks keep at or behind the persisted state; but a
    state whose newest writes were lost (a recovery that read the changelog's end while they
    were on their way) is older than that offset, and only this position re-delivers what it
    is missing."""
    if control is None:
        return 0
    return int(_decoded(control).get("e", -1)) + 1


def window_table_key(partition: int, key: WindowKey) -> str:
    unit, kind, start = key
    return f"{partition}/w/{unit}/{kind}/{start}"
