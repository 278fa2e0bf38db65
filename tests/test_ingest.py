"""What the ingest keeps of fetched records (pure: no broker)."""

from __future__ import annotations

import gc

from aiokafka.structs import ConsumerRecord

from streams.ingest.stage import held


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
