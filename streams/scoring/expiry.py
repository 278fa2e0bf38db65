"""Forgetting what no event can change any more and nothing will read again.

A final calendar window is kept until its successor is final too (its scores give the
successor's `delta_prev`), and a month as long as its year is kept (quarters and years are
merges of their months); slices go once they left the rolling span and the lateness horizon;
seen-id chunks go with the lateness horizon; a subscriber-base snapshot while it is the latest
before the end of a window still kept. What was persisted gets a tombstone at the next flush.
"""

from __future__ import annotations

from collections.abc import Callable

from streams.scoring.fold import PartitionState
from streams.scoring.keys import seen_key, window_key
from streams.scoring.state import WindowKey


def _none_held(key: WindowKey) -> bool:
    return False


def expire(
    state: PartitionState, held: Callable[[WindowKey], bool] = _none_held
) -> list[WindowKey]:
    """Expire everything that can go; returns the calendar windows dropped. A window `held`
    says is still read (its rows wait for the network level) stays for now."""
    watermark = state.watermark_ms
    if watermark is None:
        return []
    removed: list[WindowKey] = []
    horizon = watermark - state.config.allowed_lateness_ms
    expire_slices(state)
    oldest_start: dict[str, int] = {}
    for unit, unit_state in state.units.items():
        for key in list(unit_state.calendar):
            window = state.windows[key]
            if window.final and not window.unsaved:
                successor = (unit, key[1], state.window_end(key))
                if state.is_closed(successor) and not _in_kept_year(state, key) and not held(key):
                    del state.windows[key]
                    unit_state.calendar.discard(key)
                    unit_state.day_to = 0  # its windows are looked up again
                    removed.append(key)
                    if window.persisted:
                        state.deleted.add(window_key(state.partition, key))
                    continue
            if key[2] < oldest_start.get(unit, key[2] + 1):
                oldest_start[unit] = key[2]
    for unit, unit_state in state.units.items():
        for chunk, (newest, ids) in list(unit_state.chunks.items()):
            if newest < horizon:
                del unit_state.chunks[chunk]
                for event_id in ids:
                    unit_state.seen.pop(event_id, None)
                state.deleted.add(seen_key(state.partition, unit, chunk))
    for unit, unit_state in state.units.items():
        if unit in oldest_start:
            unit_state.bases.prune(oldest_start[unit])
            unit_state.programmes.prune(oldest_start[unit])
    return removed


def _in_kept_year(state: PartitionState, key: WindowKey) -> bool:
    unit, kind, start = key
    if kind != "month":
        return False
    return (unit, "year", state.calendar.window_start("year", start)) in state.windows


def expire_slices(state: PartitionState) -> None:
    """Drop the slices that left a unit's rolling window (the alert machines already
    stepped past them). Run before every flush: during a catch-up most slices come and
    go between two flushes and are never written at all."""
    span = state.config.rolling_span_ms
    slice_ms = state.config.rolling_slice_ms
    watermark = state.watermark_ms
    if watermark is None:
        return
    for unit_state in state.units.values():
        slices = unit_state.slices
        if not slices:
            continue
        end = unit_state.rolling.boundary if unit_state.rolling is not None else watermark
        oldest = min(end, watermark) - span
        # slice by slice from the oldest it may hold: each start is passed once
        start = unit_state.oldest_slice if unit_state.oldest_slice >= 0 else min(slices)
        while start + slice_ms <= oldest:
            if slices.pop(start, None) is not None:
                if unit_state.slice_guards:
                    unit_state.slice_guards.pop(start, None)
                if start == unit_state.slice_from:
                    unit_state.slice_from = -1
                if not slices:
                    break
            start += slice_ms
        unit_state.oldest_slice = start if slices else -1  # -1: the next slice opened sets it
