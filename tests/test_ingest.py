"""What the ingest keeps of fetched records and what its envelopes say (pure: no broker)."""

from __future__ import annotations

import asyncio
import gc

import orjson
from aiokafka.structs import ConsumerRecord

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


def test_an_envelope_gives_the_next_held_record_time_of_the_sources_behind_only() -> None:
    """The fold holds a source behind no earlier than its next record: the envelope carries
    that time for the sources it names behind, and for no other (a caught-up source's next
    record, if any, says nothing about a backlog)."""
    settings = load_settings()
    ingest, producer = make_ingest(settings)
    installs = settings.topic("touchpoint.installs")
    batch = records([(installs, orjson.dumps(valid(0)), None)])
    base = source_key(settings.topic("touchpoint.subscriber-base"), 0)
    installs_0 = source_key(installs, 0)
    asyncio.run(ingest.send(batch, {base}, None, None, {base: 86_400_000, installs_0: 5_000}))
    (envelope,) = [v for topic, v, _, _ in producer.sent if topic.endswith("envelopes")]
    content = read_envelope(envelope)
    assert content.behind == [base] and content.next_ms == {base: 86_400_000}
