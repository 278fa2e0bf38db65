"""Window bucketing on event time: the local calendar's day, month, quarter and year, and
UTC-aligned rolling slices.

Calendar windows follow the catalog's time zone (the operator's local calendar), so an
event at 2026-10-31T17:30Z is in the November 2026 window in Asia/Ho_Chi_Minh (UTC+7), and
one at 2026-12-31T17:30Z in the first quarter and the year 2027. Windows are identified by
their start in epoch milliseconds; the end is the next start. Quarters start in January,
April, July and October.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

WindowKind = Literal["day", "month", "quarter", "year"]
CALENDAR_KINDS: Final = ("day", "month", "quarter", "year")
# the stream folds events into day and month windows; quarters and years are merges of their
# months (accumulators only add), so an event costs the fold two windows, not four
MERGED_KINDS: Final = ("quarter", "year")
# a window of each kind is a whole number of months (a day: none, see `window_end`)
_MONTHS: Final = {"month": 1, "quarter": 3, "year": 12}
# Offsets change at most on quarter-hour boundaries, so a 15-minute bucket of UTC time has
# exactly one local day and month: the cache key for bucketing.
_BUCKET_MS: Final = 900_000
_CACHE_LIMIT: Final = 200_000


def window_kind(name: str) -> WindowKind:
    """`name` as a window kind (ValueError if it is not one)."""
    if name not in CALENDAR_KINDS:
        raise ValueError(f"unknown window kind {name!r}")
    return name  # type: ignore[return-value]


def is_final(watermark_ms: int | None, end_ms: int, allowed_lateness_ms: int) -> bool:
    """The closing rule, for a unit's windows and the network's alike: a window is final
    once the watermark passed its end plus the allowed lateness (no event can change it)."""
    return watermark_ms is not None and watermark_ms >= end_ms + allowed_lateness_ms


def slice_start_ms(event_time_ms: int, slice_ms: int) -> int:
    """Start of the rolling slice (UTC-aligned, `slice_ms` long) holding the event time."""
    return event_time_ms - event_time_ms % slice_ms


class LocalCalendar:
    """Local day and month windows of one time zone, with a cache for the hot path."""

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)
        self._starts: dict[int, tuple[int, int, int, int]] = {}

    def _local(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, self.zone)

    def _to_ms(self, local: datetime) -> int:
        return int(local.timestamp() * 1000)

    def _compute(self, bucket: int) -> tuple[int, int, int, int]:
        local = self._local(bucket * _BUCKET_MS)
        day = local.replace(hour=0, minute=0, second=0, microsecond=0)
        month = day.replace(day=1)
        quarter = month.replace(month=month.month - (month.month - 1) % 3)
        year = month.replace(month=1)
        return tuple(self._to_ms(d) for d in (day, month, quarter, year))  # type: ignore[return-value]

    def _all_starts(self, event_time_ms: int) -> tuple[int, int, int, int]:
        bucket = event_time_ms // _BUCKET_MS
        found = self._starts.get(bucket)
        if found is None:
            if len(self._starts) >= _CACHE_LIMIT:
                self._starts.clear()
            found = self._starts[bucket] = self._compute(bucket)
        return found

    def starts(self, event_time_ms: int) -> tuple[int, int]:
        """(local day start, local month start) of an event time, both in epoch ms: the
        windows the fold adds events to (quarters and years are merges of months)."""
        day, month, _, _ = self._all_starts(event_time_ms)
        return day, month

    def window_start(self, kind: WindowKind, event_time_ms: int) -> int:
        return self._all_starts(event_time_ms)[CALENDAR_KINDS.index(kind)]

    def window_end(self, kind: WindowKind, start_ms: int) -> int:
        """Start of the next window of the same kind (exclusive end)."""
        local = self._local(start_ms)
        if kind == "day":
            following = (local + timedelta(days=1, hours=12)).replace(hour=0)
        else:
            months = local.year * 12 + local.month - 1 + _MONTHS[kind]
            following = local.replace(year=months // 12, month=months % 12 + 1, day=1)
        return self._to_ms(following.replace(minute=0, second=0, microsecond=0))

    def months_of(self, kind: WindowKind, start_ms: int) -> list[int]:
        """The starts of the months a month, quarter or year window is made of."""
        end = self.window_end(kind, start_ms)
        months = [start_ms]
        while (following := self.window_end("month", months[-1])) < end:
            months.append(following)
        return months

    def stamp(self, kind: WindowKind, start_ms: int, watermark_ms: int | None) -> int:
        """The record timestamp of a window's records. Day and month records carry their
        window's start (the topics' time retention then counts in windows); a quarter or year
        record the start of the month of its newest data (the watermark's month, within the
        window), so a reader seeking the newest month's records by timestamp finds every
        kind's newest window."""
        if kind not in MERGED_KINDS:
            return start_ms
        end = self.window_end(kind, start_ms)
        newest = start_ms if watermark_ms is None else max(start_ms, min(watermark_ms, end - 1))
        return self.window_start("month", newest)

    def previous_start(self, kind: WindowKind, start_ms: int) -> int:
        """Start of the window of the same kind just before this one."""
        return self.window_start(kind, start_ms - 1)

    def date_start(self, day: date) -> int:
        """A local date's midnight, epoch ms."""
        return self._to_ms(datetime(day.year, day.month, day.day, tzinfo=self.zone))

    def isoformat(self, ms: int) -> str:
        """ISO 8601 with the local offset, e.g. `2026-11-01T00:00:00+07:00`."""
        return self._local(ms).isoformat()
