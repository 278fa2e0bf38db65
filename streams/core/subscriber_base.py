"""Subscriber-base snapshots: the denominator of `rate` KPIs (per 1,000 active subscribers).

A snapshot is not a count to add up: a window uses the latest snapshot of the unit and
service taken before the window's end. Equal times keep the larger count, so the answer does
not depend on arrival order.
"""

from __future__ import annotations

from bisect import bisect_left, insort


class SubscriberBases:
    def __init__(self) -> None:
        self._snapshots: dict[str, dict[str, list[tuple[int, int]]]] = {}

    def add(self, unit: str, service: str, time_ms: int, active_subscribers: int) -> None:
        insort(
            self._snapshots.setdefault(unit, {}).setdefault(service, []),
            (time_ms, active_subscribers),
        )

    def at(self, unit: str, end_ms: int) -> dict[str, float]:
        """Per service, the latest snapshot strictly before `end_ms` (the window's end)."""
        found: dict[str, float] = {}
        for service, snapshots in self._snapshots.get(unit, {}).items():
            i = bisect_left(snapshots, (end_ms, -1))
            if i:
                found[service] = float(snapshots[i - 1][1])
        return found

    def snapshots(self, unit: str) -> dict[str, list[tuple[int, int]]]:
        """Every snapshot kept for a unit, per service (for persistence)."""
        return {service: list(rows) for service, rows in self._snapshots.get(unit, {}).items()}

    def prune(self, before_ms: int) -> None:
        """Forget snapshots older than the newest one before `before_ms` (they can't matter)."""
        for services in self._snapshots.values():
            for service, snapshots in services.items():
                i = bisect_left(snapshots, (before_ms, -1))
                if i > 1:
                    services[service] = snapshots[i - 1 :]
