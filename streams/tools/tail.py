"""Reading output topics back (`cemi tail`, `cemi alerts`, tests): records of every output
format (`streams.wire.outputs`) as dicts."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from streams.core.events import InvalidEvent
from streams.wire.outputs import OutputCodec, reader_codec


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    from_beginning: bool = True,
    idle_exit_s: float | None = None,
    security: Mapping[str, Any] | None = None,
    codec: OutputCodec | None = None,
) -> AsyncIterator[tuple[Any, dict[str, Any]]]:
    """Yield (message, decoded record) until `idle_exit_s` passes without a new record; a
    tombstone (no value) is yielded as `{}`.

    `security`: `streams.kafka_security.client_kwargs(settings)` (TLS/SASL), if any.
    `codec`: reads Confluent-framed records when it has the registry (`reader_codec`).
    """
    codec = codec or reader_codec(None)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        client_id=f"cemi-tail-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        **(security or {}),
    )
    await consumer.start()
    try:
        last = time.monotonic()
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            if not batches:
                if idle_exit_s is not None and time.monotonic() - last >= idle_exit_s:
                    return
                continue
            last = time.monotonic()
            for records in batches.values():
                for message in records:
                    if message.value is None:
                        yield message, {}
                        continue
                    try:
                        record = codec.decode(message.value)
                    except InvalidEvent as error:
                        record = {"undecodable": error.text}
                    yield message, record
    finally:
        await consumer.stop()


async def latest_by_key(
    bootstrap: str,
    topic: str,
    idle_exit_s: float = 3.0,
    security: Mapping[str, Any] | None = None,
    codec: OutputCodec | None = None,
) -> dict[bytes, Any]:
    """The latest record per key of a (compacted) topic, as a consumer would keep it (a
    tombstone deletes its key)."""
    latest: dict[bytes, Any] = {}
    async for message, record in read_topic(
        bootstrap, topic, idle_exit_s=idle_exit_s, security=security, codec=codec
    ):
        if message.value is None:
            latest.pop(message.key, None)
        else:
            latest[message.key] = record
    return latest


async def follow_json(
    bootstrap: str, topic: str, security: Mapping[str, Any] | None = None
) -> AsyncIterator[tuple[Any, Any]]:
    """Follow a JSON topic from its beginning, forever: (message, decoded value)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=200,
        **(security or {}),
    )
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for message in records:
                    yield message, orjson.loads(message.value)
    finally:
        await consumer.stop()
