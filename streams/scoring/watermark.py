"""A partition's watermark: how far in event time its input has surely been seen.

The watermark is the minimum, over the input partitions (sources) feeding the envelope
partition that were active in the last `source_idle_ms` of wall-clock time, of the newest
event time each has delivered; it never goes back. Several ingests (one per worker) and
topics of very different volume feed one partition at their own pace, so the newest event
seen would let a fast source declare a slow one's events late. A source whose last envelope
said it still had a backlog on the broker stays in the minimum for `behind_source_idle_ms`
instead: a rebalance or a crashed worker silences it for longer than the idle time, and the
other sources' event time must not run ahead of its unread records. When its ingest already
holds its next record, such a source counts at that record's event time rather than at its
last one's: a source with one record a day (the daily subscriber snapshots) would otherwise
hold every window of a replay a day past its end. Both stand for the same thing, how far the
source got in event time, on the same assumption: a source's records come roughly in event
time order. An event older than the watermark minus the allowed lateness is late; a window
is final by `streams.core.windows.is_final`, the rule the network level uses too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from streams.scoring.state import FoldConfig

HOLDING = 1  # a source its own ingest reports behind
GROUP_HOLDING = 2  # a source only the group view reports behind


class Watermark:
    def __init__(self, config: FoldConfig) -> None:
        self.config = config
        self.ms: int | None = None
        # source -> [newest event time, wall-clock ms when it last delivered, holding (0, 1, 2)]
        # (the fold updates a delivering source in its loop, inline)
        self.sources: dict[str, list[int]] = {}

    def refresh(self, now_ms: int) -> None:
        """Minimum newest time over the active sources; with none active, everything sent
        has been seen, so the newest time of all."""
        if not self.sources:
            return
        config = self.config
        since = (
            now_ms - config.source_idle_ms,  # 0: delivering, or caught up
            now_ms - config.behind_source_idle_ms,  # 1: its ingest reports a backlog
            now_ms - config.group_behind_idle_ms,  # 2: the group view reports one
        )
        newest = [t for t, seen, behind in self.sources.values() if seen >= since[behind]]
        candidate = min(newest) if newest else max(t for t, _, _ in self.sources.values())
        if self.ms is None or candidate > self.ms:
            self.ms = candidate

    def track_backlogs(
        self,
        behind: Iterable[str],
        caught_up: Iterable[str],
        now_ms: int,
        group_behind: Iterable[str] = (),
        first_oldest: int | None = None,
        next_event_ms: Mapping[str, int] | None = None,
    ) -> None:
        """A source with records left holds the watermark even before it delivered anything
        here (its events may be hours behind the others'), for as long as its ingest keeps
        reporting it; a caught-up one is released after the usual idle time. Such a source
        is held where the watermark is, or, on the partition's first envelope (no watermark
        yet), at that envelope's oldest event: one batch of history can span hours, and the
        silent source's records may start as early as the envelope's. A source whose next
        record's event time is known (`next_event_ms`) is held no earlier than that."""
        sources = self.sources
        hold = self.ms
        if hold is None:
            hold = first_oldest
        if hold is None and sources:
            hold = min(newest for newest, _, _ in sources.values())
        next_event_ms = next_event_ms or {}
        for source in behind:
            seen_from = sources.get(source)
            next_event = next_event_ms.get(source)
            if seen_from is None:
                if hold is not None:
                    at = hold if next_event is None else max(hold, next_event)
                    sources[source] = [at, now_ms, HOLDING]
            else:
                seen_from[1] = now_ms
                seen_from[2] = HOLDING
                if next_event is not None and next_event > seen_from[0]:
                    seen_from[0] = next_event
        for source in group_behind:
            seen_from = sources.get(source)
            if seen_from is None:
                if hold is not None:
                    sources[source] = [hold, now_ms, GROUP_HOLDING]
            elif seen_from[2] != HOLDING:  # its own ingest's word counts for more
                seen_from[1] = now_ms
                seen_from[2] = GROUP_HOLDING
        for source in caught_up:
            seen_from = sources.get(source)
            if seen_from is not None:
                seen_from[2] = 0

    def pause(self, paused_ms: int) -> None:
        """Time in which the input could not be read (the broker unreachable) is not silence:
        every source's last delivery moves that much later, so a source holding a backlog
        is not released by an outage, nor the watermark carried past its unread events."""
        for source in self.sources.values():
            source[1] += paused_ms

    def advance_idle(self, elapsed_ms: int) -> None:
        """An idle partition's watermark follows the wall clock, so its windows still close."""
        if self.ms is not None and elapsed_ms > 0:
            self.ms += elapsed_ms
            for source in self.sources.values():  # idle sources must not pull it back
                source[0] = max(source[0], self.ms)
