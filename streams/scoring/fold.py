"""How envelopes fold into the scoring state of one envelope partition (no Kafka): the hot
loop, once per event.

An entry passes the unit's guard (a replay is skipped whole: `streams.scoring.persistence`
explains the guards), the duplicate check (seen event ids over the lateness horizon) and the
lateness check (`streams.scoring.watermark`), then adds its KPI contributions to its day and
month windows and its rolling slice. Quarter and year windows hold no accumulators: they are
merges of their months (`accumulators_of`). A unit seen for the first time is admitted up to
the partition's unit cap; past it, its entries are dead-lettered through the outbox
(`streams.scoring.outbox`), which also takes late events and alert transitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from streams.contract.envelope import Row
from streams.core.accumulators import Accumulators, add, merge
from streams.core.events import SNAPSHOT_TYPES
from streams.core.programmes import ProgrammeDef
from streams.core.windows import MERGED_KINDS, LocalCalendar, is_final, slice_start_ms
from streams.scoring import programme_alerts
from streams.scoring.alerting import AlertEvaluator
from streams.scoring.outbox import Outbox, late_record, unit_cap_record
from streams.scoring.rolling import UnitRolling
from streams.scoring.state import Counts, FoldConfig, UnitState, Window, WindowKey
from streams.scoring.watermark import Watermark


class PartitionState:
    """State of one partition of the envelope topic: every unit routed to it."""

    def __init__(self, partition: int, config: FoldConfig) -> None:
        self.partition = partition
        self.config = config
        self.calendar = LocalCalendar(config.timezone)
        self.clock = Watermark(config)
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

    @property
    def watermark_ms(self) -> int | None:
        return self.clock.ms

    @watermark_ms.setter
    def watermark_ms(self, value: int | None) -> None:
        self.clock.ms = value

    # -- folding -----------------------------------------------------------------------

    def apply(
        self,
        entries: Iterable[Row],
        now_ms: int,
        behind: Iterable[str] = (),
        caught_up: Iterable[str] = (),
        group_behind: Iterable[str] = (),
        next_event_ms: Mapping[str, int] | None = None,
    ) -> None:
        """Fold one envelope's entries (rows as `read_envelope` gives them, or `Entry`s);
        the watermark moves between envelopes. `behind` and `caught_up`: the sending
        ingest's sources with and without records left to read; `next_event_ms`: the event
        times of the next records it holds of the sources behind."""
        clock = self.clock
        clock.refresh(now_ms)
        first_oldest = None
        if self.watermark_ms is None:  # the partition's first envelope
            entries = list(entries)
            first_oldest = min((e[4] for e in entries), default=None)
        # the watermark moves between envelopes only: one horizon for the whole envelope
        lateness = self.config.allowed_lateness_ms
        horizon = None if self.watermark_ms is None else self.watermark_ms - lateness
        units = self.units
        sources = clock.sources
        counts = self.counts
        scored = replayed = 0
        newest_ingest_ms = self.newest_ingest_ms
        fold, fold_snapshot = self._fold, self._fold_snapshot
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
            if etype in SNAPSHOT_TYPES:
                fold_snapshot(
                    unit, state, source, offset, event_time, ingest_ms, etype, service, payload
                )
            else:
                fold(unit, state, source, offset, event_time, ingest_ms, payload)
        counts.scored += scored
        counts.replayed += replayed
        self.newest_ingest_ms = newest_ingest_ms
        clock.track_backlogs(behind, caught_up, now_ms, group_behind, first_oldest, next_event_ms)
        clock.refresh(now_ms)

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

    def _fold_snapshot(
        self,
        unit: str,
        state: UnitState,
        source: str,
        offset: int,
        event_time: int,
        ingest_ms: int,
        etype: str,
        service: str | None,
        payload: Any,
    ) -> None:
        """A snapshot (a subscriber base, a programme indicator's value): no KPI contribution,
        but what its day and month windows, and every later window, publish changes (rates,
        programme records)."""
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
            if etype == "subscriber_base":
                assert service is not None
                state.bases.add(unit, service, event_time, int(payload))
            else:
                programme, indicator, value = payload
                state.programmes.add(programme, indicator, event_time, float(value))
            state.bases_unsaved = True
            for key in state.calendar:  # what later windows publish changes
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
        programmes = list(evaluator.plan.programmes.values())
        if programmes:
            self._step_programmes(programmes, evaluator.plan.version)

    def _step_programmes(self, programmes: list[ProgrammeDef], version: str) -> None:
        """The programme_behind alerts of every unit (`streams.scoring.programme_alerts`)."""
        assert self.watermark_ms is not None
        zone = self.calendar.zone
        for unit, state in self.units.items():
            self.outbox.extend(
                "alert",
                programme_alerts.step(
                    programmes,
                    unit,
                    state.programme_alerts,
                    state.programmes,
                    self.watermark_ms,
                    self.config.allowed_lateness_ms,
                    zone,
                    version,
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

    def acknowledge_programme(
        self, evaluator: AlertEvaluator, unit: str, wanted_id: str, by: str
    ) -> bool:
        """Mark a firing programme_behind alert acknowledged (its record to the outbox)."""
        state = self.units.get(unit)
        if state is None:
            return False
        plan = evaluator.plan
        records = programme_alerts.acknowledge(
            plan.programmes, unit, state.programme_alerts, state.programmes, wanted_id, by,
            plan.version,
        )  # fmt: skip
        self.outbox.extend("alert", records)
        return bool(records)

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
