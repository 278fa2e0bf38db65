"""Resync: a partition whose envelopes Faust skipped is paused, drained, sought back."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from streams.worker.resync import QUIET_S, RETRY_S, Resync


class TP(NamedTuple):
    topic: str
    partition: int


class FakeConsumer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def pause_partitions(self, tps: Any) -> None:
        self.calls.append(("pause", sorted(tps)))

    def resume_partitions(self, tps: Any) -> None:
        self.calls.append(("resume", sorted(tps)))

    async def seek(self, partition: Any, offset: int) -> None:
        self.calls.append(("seek", (partition, offset)))


TP0 = TP("envelopes", 0)


def make(stable: bool = True) -> tuple[Resync, FakeConsumer]:
    consumer = FakeConsumer()
    return Resync(lambda: consumer, lambda: stable), consumer


def test_a_skip_pauses_the_partition_and_seeks_back_only_once_the_batch_in_hand_is_through() -> (
    None
):
    resync, consumer = make()
    resync.skipped(TP0, expected=17, got=19, now=100.0)
    resync.skipped(TP0, expected=17, got=20, now=100.3)  # the batch in hand, still coming
    asyncio.run(resync.seek_back(now=100.3 + QUIET_S / 2))
    assert consumer.calls == [("pause", [TP0])]  # not quiet yet: no seek
    asyncio.run(resync.seek_back(now=100.3 + QUIET_S))
    assert consumer.calls == [("pause", [TP0]), ("seek", (TP0, 17)), ("resume", [TP0])]
    resync.arrived(TP0)
    asyncio.run(resync.seek_back(now=200.0))
    assert len(consumer.calls) == 3  # in order again: nothing more


def test_a_seek_followed_only_by_later_envelopes_is_tried_again() -> None:
    resync, consumer = make()
    resync.skipped(TP0, expected=5, got=7, now=10.0)
    asyncio.run(resync.seek_back(now=10.0 + QUIET_S))
    resync.skipped(TP0, expected=5, got=9, now=10.0 + QUIET_S + 0.1)  # leftovers: wait
    assert [c[0] for c in consumer.calls] == ["pause", "seek", "resume"]
    later = 10.0 + QUIET_S + RETRY_S + 0.1
    resync.skipped(TP0, expected=5, got=12, now=later)  # the seek was lost
    asyncio.run(resync.seek_back(now=later + QUIET_S))
    assert [c[0] for c in consumer.calls] == ["pause", "seek", "resume", "pause", "seek", "resume"]


def test_during_a_rebalance_the_partition_is_sought_but_left_to_faust_to_resume() -> None:
    resync, consumer = make(stable=False)
    resync.skipped(TP0, expected=3, got=4, now=0.0)
    asyncio.run(resync.seek_back(now=QUIET_S))
    assert [c[0] for c in consumer.calls] == ["pause", "seek"]
    resync.clear()
    asyncio.run(resync.seek_back(now=10.0))
    assert len(consumer.calls) == 2
