"""What the ingest keeps of fetched records and what its envelopes say (pure: no broker)."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition

from streams.contract.envelope import read_envelope, source_key
from streams.ingest.stage import held
from streams.settings import load_settings
from tests.security.test_hostile_input import make_ingest, records, valid


def consumer_record(offset: int, key: bytes | None) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="cemi.in.order",
        partition=3,
        offset=offset,
        timestamp=1_764_547_200_000 + offset,
        timestamp_type=0,
        key=key,
        value=b"\x00\x00\x00\x00\x01payload",
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=12,
        headers=(),
    )


def test_a_held_record_keeps_timestamp_offset_key_and_value_in_merge_order() -> None:
    record = consumer_record(41, b"u1")
    assert held(record) == (record.timestamp, 41, b"u1", record.value)


def test_a_held_record_leaves_the_cycle_collector_at_its_first_young_collection() -> None:
    """Full collections of the ingest child scan what the merge holds: fetched records must
    not stay tracked (a ConsumerRecord does)."""
    records = [consumer_record(offset, key) for offset, key in ((1, b"u1"), (2, None))]
    kept = [held(record) for record in records]
    gc.collect(0)
    assert all(gc.is_tracked(record) for record in records)
    assert not any(gc.is_tracked(entry) for entry in kept)


def test_an_envelope_gives_the_event_time_of_the_next_held_record_of_its_sources_behind() -> None:
    """The fold holds a source behind no earlier than its next record: the envelope carries
    that record's event time (not its record timestamp: a producer stamping the send time
    replays history with timestamps far ahead of the events), for the sources it names
    behind only, and none for a next record that is not valid."""
    settings = load_settings()
    ingest, producer = make_ingest(settings)
    installs, orders = settings.topic("touchpoint.installs"), settings.topic("touchpoint.orders")
    batch = records([(installs, orjson.dumps(valid(0)), None)])
    sent_later = 1_900_000_000_000  # the record timestamp: far after the event
    base = source_key(settings.topic("touchpoint.subscriber-base"), 0)
    snapshot = {**valid(1), "event_time": 1_764_547_200_000}
    from_the_future = {**valid(3), "event_time": int(time.time() * 1000) + 365 * 86_400_000}
    heads: dict[TopicPartition, Any] = {
        TopicPartition(settings.topic("touchpoint.subscriber-base"), 0): (
            sent_later,
            7,
            None,
            orjson.dumps(snapshot),
        ),
        TopicPartition(orders, 0): (sent_later, 3, None, b"not an event"),
        TopicPartition(installs, 0): (sent_later, 9, None, orjson.dumps(valid(2))),
        TopicPartition(orders, 1): None,  # nothing held of it
        # from the future: dead-lettered when released, no word on where its source goes on
        TopicPartition(orders, 2): (sent_later, 1, None, orjson.dumps(from_the_future)),
    }
    next_event_ms = asyncio.run(ingest.next_event_times(heads))
    assert next_event_ms == {
        base: 1_764_547_200_000,
        source_key(installs, 0): valid(2)["event_time"],
    }
    asyncio.run(ingest.send(batch, {base, source_key(orders, 0)}, None, None, next_event_ms))
    (envelope,) = [v for topic, v, _, _ in producer.sent if topic.endswith("envelopes")]
    content = read_envelope(envelope)
    assert content.behind == sorted([base, source_key(orders, 0)])
    assert content.next_event_ms == {base: 1_764_547_200_000}


def test_only_the_last_envelope_of_a_batch_for_a_partition_says_where_its_sources_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch's entries for one partition can fill several envelopes; the next records'
    event times are past all of them, so the earlier envelopes carry none (the fold would
    move its watermark past the entries of the envelopes still to come)."""
    monkeypatch.setattr("streams.ingest.stage.MAX_ENVELOPE_ENTRIES", 2)
    settings = load_settings(partitions=1)
    ingest, producer = make_ingest(settings)
    installs = settings.topic("touchpoint.installs")
    batch = records([(installs, orjson.dumps(valid(i)), None) for i in range(5)])
    source = source_key(installs, 0)
    asyncio.run(ingest.send(batch, {source}, None, None, {source: 1_900_000_000_000}))
    envelopes = [
        read_envelope(v) for topic, v, _, _ in producer.sent if topic.endswith("envelopes")
    ]
    assert [len(e.entries) for e in envelopes] == [2, 2, 1]
    assert [e.next_event_ms for e in envelopes] == [{}, {}, {source: 1_900_000_000_000}]
    assert all(e.behind == [source] for e in envelopes)
