"""Where a reader of the score topics starts so that it sees the newest windows without
reading their history (the API's view keeps only the newest window per kind and unit).

Score and KPI records carry their window's start as the record timestamp, so the records
of the newest month (and of its days) are the ones stamped at or after that month's start,
and Kafka's `offsets_for_times` gives the first of them: the reading costs a month of
records however long the topics' history is. The newest month is found from the newest
timestamp among each partition's last records.

The embedded broker answers `offsets_for_times` with offset 0 whatever the time (measured:
the timestamp is ignored). With its work-arounds on, the offset is found by a binary search
over the records' own timestamps instead. Those are not ordered (a closing window's final
rows come after the next window's first ones), so each probe looks at the newest stamp of
the `PROBE_RECORDS` records from there: the search is exact while such a stretch of older
records is shorter than that, and can start a little late otherwise (the embedded broker
keeps its topics for one run only, where this matters little).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.core.windows import LocalCalendar
from streams.http.view import OutputView
from streams.kafka_security import client_kwargs
from streams.settings import Settings

log = logging.getLogger(__name__)
READ_TIMEOUT_S = 5.0
PROBE_RECORDS = 500


async def _probe(
    consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int
) -> tuple[int, int] | None:
    """(offset of the first record at or after `offset`, the newest stamp among the next
    PROBE_RECORDS records), or None past the end."""
    consumer.seek(tp, offset)
    deadline = asyncio.get_running_loop().time() + READ_TIMEOUT_S
    while asyncio.get_running_loop().time() < deadline:
        batch = await consumer.getmany(tp, timeout_ms=200, max_records=PROBE_RECORDS)
        messages = batch.get(tp, ())
        if messages:
            return messages[0].offset, max(m.timestamp for m in messages)
        highwater = consumer.highwater(tp)
        if highwater is not None and await consumer.position(tp) >= highwater:
            return None
    return None


async def _newest_timestamp(consumer: AIOKafkaConsumer, tp: TopicPartition, end: int) -> int | None:
    """The largest timestamp among the partition's last records (from the last batch on)."""
    consumer.seek(tp, max(end - 1, 0))
    newest: int | None = None
    deadline = asyncio.get_running_loop().time() + READ_TIMEOUT_S
    while asyncio.get_running_loop().time() < deadline:
        batch = await consumer.getmany(tp, timeout_ms=200, max_records=1000)
        for message in batch.get(tp, ()):
            if newest is None or message.timestamp > newest:
                newest = message.timestamp
        highwater = consumer.highwater(tp)
        if highwater is not None and await consumer.position(tp) >= highwater:
            break
    return newest


async def _search(consumer: AIOKafkaConsumer, tp: TopicPartition, end: int, since_ms: int) -> int:
    """The first offset found whose record is stamped `since_ms` or later (binary search)."""
    low, high = 0, end
    while low < high:
        middle = (low + high) // 2
        found = await _probe(consumer, tp, middle)
        if found is None or found[1] >= since_ms:
            high = middle
        else:
            low = found[0] + 1
    return low


async def newest_window_positions(
    consumer: AIOKafkaConsumer,
    partitions: Iterable[TopicPartition],
    calendar: LocalCalendar,
    workarounds: bool,
) -> dict[TopicPartition, int]:
    """Per score/KPI partition (assigned to `consumer`), the offset to read from."""
    tps = list(partitions)
    ends = await consumer.end_offsets(tps)
    stamps = [await _newest_timestamp(consumer, tp, ends[tp]) for tp in tps if ends[tp] > 0]
    newest = max((t for t in stamps if t is not None), default=None)
    if newest is None:
        return {tp: 0 for tp in tps}
    since_ms = calendar.window_start("month", newest)
    if workarounds:
        return {tp: await _search(consumer, tp, ends[tp], since_ms) for tp in tps}
    found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
    return {tp: ends[tp] if found.get(tp) is None else found[tp].offset for tp in tps}


async def follow_topics(
    settings: Settings,
    bootstrap: str,
    topics: list[str],
    view: OutputView,
    bounded: Iterable[str] = (),
    calendar: LocalCalendar | None = None,
) -> AsyncIterator[Any]:
    """The records of `topics`, forever: the `bounded` ones from their newest windows on
    (`streams.http.follow`), the others from the beginning; marks the view caught up once
    every partition was read to its high watermark."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        client_id=f"cemi-api-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=200,
        **client_kwargs(settings),
    )
    await consumer.start()
    try:
        await consumer.topics()  # metadata of every topic
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(tps)
        limited = [tp for tp in tps if tp.topic in set(bounded)]
        if limited and calendar is not None:
            started = time.monotonic()
            positions = await newest_window_positions(
                consumer, limited, calendar, settings.workarounds
            )
            for tp in tps:
                consumer.seek(tp, positions.get(tp, 0))
            log.info(
                "following the outputs from %s (found in %.2f s)",
                {f"{tp.topic}[{tp.partition}]": o for tp, o in positions.items()},
                time.monotonic() - started,
            )
        else:
            await consumer.seek_to_beginning(*tps)
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for message in records:
                    yield message
            if not view.caught_up:
                view.caught_up = await _at_highwater(consumer, consumer.assignment())
    finally:
        await consumer.stop()


async def _at_highwater(consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> bool:
    if not assigned:
        return False
    for tp in assigned:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True
