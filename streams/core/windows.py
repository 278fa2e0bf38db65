"""Window bucketing on event time: local calendar day/month and UTC-aligned rolling slices.

Day and month windows follow the catalog's time zone (the operator's local calendar), so an
event at 2026-10-31T17:30Z is in the November 2026 window in Asia/Ho_Chi_Minh (UTC+7).
Windows are identified by their start in epoch milliseconds; the end is the next start.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

WindowKind = Literal["day", "month"]
CALENDAR_KINDS: Final = ("day", "month")
# Offsets change at most on quarter-hour boundaries, so a 15-minute bucket of UTC time has
# exactly one local day and month: the cache key for bucketing.
_BUCKET_MS: Final = 900_000
_CACHE_LIMIT: Final = 200_000


def slice_start_ms(event_time_ms: int, slice_ms: int) -> int:
    """Start of the rolling slice (UTC-aligned, `slice_ms` long) holding the event time."""
    return event_time_ms - event_time_ms % slice_ms


class LocalCalendar:
    """Local day and month windows of one time zone, with a cache for the hot path."""

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)
        self._starts: dict[int, tuple[int, int]] = {}

    def _local(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, self.zone)

    def _to_ms(self, local: datetime) -> int:
        return int(local.timestamp() * 1000)

    def _compute(self, bucket: int) -> tuple[int, int]:
        local = self._local(bucket * _BUCKET_MS)
        day = local.replace(hour=0, minute=0, second=0, microsecond=0)
        month = day.replace(day=1)
        return self._to_ms(day), self._to_ms(month)

    def starts(self, event_time_ms: int) -> tuple[int, int]:
        """(local day start, local month start) of an event time, both in epoch ms."""
        bucket = event_time_ms // _BUCKET_MS
        found = self._starts.get(bucket)
        if found is None:
            if len(self._starts) >= _CACHE_LIMIT:
                self._starts.clear()
            found = self._starts[bucket] = self._compute(bucket)
        return found

    def window_start(self, kind: WindowKind, event_time_ms: int) -> int:
        day, month = self.starts(event_time_ms)
        return day if kind == "day" else month

    def window_end(self, kind: WindowKind, start_ms: int) -> int:
        """Start of the next window of the same kind (exclusive end)."""
        local = self._local(start_ms)
        if kind == "day":
            following = (local + timedelta(days=1, hours=12)).replace(hour=0)
        else:
            following = (local.replace(day=28) + timedelta(days=7)).replace(day=1)
        return self._to_ms(following.replace(minute=0, second=0, microsecond=0))

    def previous_start(self, kind: WindowKind, start_ms: int) -> int:
        """Start of the window of the same kind just before this one."""
        return self.window_start(kind, start_ms - 1)

    def isoformat(self, ms: int) -> str:
        """ISO 8601 with the local offset, e.g. `2026-11-01T00:00:00+07:00`."""
        return self._local(ms).isoformat()
