"""Merging input partitions in record-timestamp order (no Kafka imports).

Each event type has its own topic, and a consumer fetches partitions unevenly: one batch
can hold an hour of orders before the first ticket of that hour. Folded as fetched, the
tickets would look late. Like Kafka Streams, the ingest releases buffered records across
partitions in record-timestamp order, and waits (up to `max_wait_s`) for a partition that
has more data on the broker but nothing buffered yet.

A record here is a tuple whose first item is its record timestamp (the ingest keeps plain
tuples: see `streams/ingest/stage.py`).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Generic, TypeVar

P = TypeVar("P", bound=Hashable)


class Aligner(Generic[P]):
    def __init__(self, max_wait_s: float) -> None:
        self.max_wait_s = max_wait_s
        self.buffers: dict[P, deque[Any]] = {}
        self._starved_since: dict[P, float] = {}

    def add(self, partition: P, records: Iterable[Any]) -> None:
        self.buffers.setdefault(partition, deque()).extend(records)

    def drop(self, partitions: Iterable[P]) -> None:
        for partition in partitions:
            self.buffers.pop(partition, None)
            self._starved_since.pop(partition, None)

    def buffered(self, partition: P) -> int:
        buffer = self.buffers.get(partition)
        return len(buffer) if buffer else 0

    def next_record(self, partition: P) -> Any | None:
        """The partition's next record to release, if one is held."""
        buffer = self.buffers.get(partition)
        return buffer[0] if buffer else None

    def waiting(self, assigned: Iterable[P], caught_up: Callable[[P], bool], now: float) -> set[P]:
        """Partitions that hold the merge back: nothing buffered, more on the broker, and
        not starved for longer than `max_wait_s` (a stuck partition stops holding)."""
        waiting: set[P] = set()
        for partition in assigned:
            if self.buffers.get(partition) or caught_up(partition):
                self._starved_since.pop(partition, None)
                continue
            since = self._starved_since.setdefault(partition, now)
            if now - since < self.max_wait_s:
                waiting.add(partition)
        return waiting

    def release(self, caught_up: Callable[[P], bool], limit: int) -> list[tuple[P, Any]]:
        """Up to `limit` records, oldest record timestamp first, across partitions; stops
        when a partition runs dry that has more on the broker. Call when nothing waits."""
        heads = [(b[0][0], i, p) for i, (p, b) in enumerate(self.buffers.items()) if b]
        heapq.heapify(heads)
        out: list[tuple[P, Any]] = []
        while heads and len(out) < limit:
            _, i, partition = heapq.heappop(heads)
            buffer = self.buffers[partition]
            out.append((partition, buffer.popleft()))
            # the partition's next records, as long as they come before every other head
            # (the order the heap gives, without a heap operation per record)
            if heads:
                next_time, next_i, _ = heads[0]
                while (
                    buffer
                    and len(out) < limit
                    and (buffer[0][0] < next_time or (buffer[0][0] == next_time and i < next_i))
                ):
                    out.append((partition, buffer.popleft()))
            else:
                while buffer and len(out) < limit:
                    out.append((partition, buffer.popleft()))
            if buffer:
                heapq.heappush(heads, (buffer[0][0], i, partition))
            elif not caught_up(partition):
                break  # more of it is on the broker: fetch before going past its time
        return out
