"""The API follower starts at the newest month's records, not at the topics' beginning."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.broker import EmbeddedBroker
from streams.core.windows import LocalCalendar
from streams.http.follow import PROBE_RECORDS, newest_window_positions
from tests.factories import local_ms

pytestmark = pytest.mark.broker
CALENDAR = LocalCalendar("Asia/Ho_Chi_Minh")
DAY_MS = 86_400_000


def publications(days: int, keys: int) -> list[tuple[bytes, int]]:
    """(key, record timestamp) as the scorer publishes them over `days` days from Oct 1:
    each day's records (stamped with the day's start) and its month's (the month's start),
    and after a month ends, the old month's final records among the new month's first."""
    start = local_ms("2026-10-01 00:00")
    out: list[tuple[bytes, int]] = []
    for d in range(days):
        day = start + d * DAY_MS
        month = CALENDAR.window_start("month", day)
        for k in range(keys):
            out.append((f"k{k}/day/{day}".encode(), day))
            out.append((f"k{k}/month/{month}".encode(), month))
            if day == month and d:  # the previous month's final rows come late
                previous = CALENDAR.previous_start("month", month)
                out.append((f"k{k}/month/{previous}".encode(), previous))
    return out


async def positions_and_records(url: str, workarounds: bool) -> tuple[int, list[int], int]:
    topic = f"follow-{uuid.uuid4().hex[:6]}"
    producer = AIOKafkaProducer(bootstrap_servers=url, linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, b"v", key=key, partition=0, timestamp_ms=ts)
            for key, ts in publications(days=75, keys=20)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=url, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        found = await newest_window_positions(consumer, [tp], CALENDAR, workarounds)
        consumer.seek(tp, 0)
        stamps: list[int] = []
        while len(stamps) < len(sent):
            batch = await consumer.getmany(tp, timeout_ms=1000)
            stamps.extend(m.timestamp for m in batch.get(tp, ()))
        return found[tp], stamps, len(sent)
    finally:
        await consumer.stop()


def test_the_follower_starts_at_the_newest_month_and_misses_none_of_its_records() -> None:
    with EmbeddedBroker() as broker:
        position, stamps, total = asyncio.run(positions_and_records(broker.url, True))
    newest_month = local_ms("2026-12-01 00:00")  # day 75 from Oct 1 is in December
    first = stamps.index(newest_month)
    # every record of the newest month (and of its days) is at or after the position
    assert all(ts < newest_month for ts in stamps[:position])
    assert position <= first
    # and it skips the history (October, November), but for one probe's stretch at most
    assert position >= first - PROBE_RECORDS
    assert first > 0.75 * total
