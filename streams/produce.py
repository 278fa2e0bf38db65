"""Sending events to the input topics (`cemi produce`, `cemi simulate`, tests, benchmarks)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaProducer

from streams.kafka_security import client_kwargs
from streams.settings import Settings
from streams.topics import Topics
from streams.wire.codec import encode
from streams.wire.schemas import SchemaStore

WireFormat = Literal["avro", "json", "mixed"]


class EventProducer:
    """Encodes events (Avro single-object or JSON) and sends each to its type's topic."""

    def __init__(self, settings: Settings, bootstrap: str, wire: WireFormat = "avro") -> None:
        self.topics = Topics(settings)
        self.store = SchemaStore()
        self.wire = wire
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            **client_kwargs(settings),
            linger_ms=10,
            max_batch_size=256 * 1024,
        )
        self.sent = 0

    async def __aenter__(self) -> EventProducer:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    def encode(self, event: dict[str, Any]) -> bytes:
        as_json = self.wire == "json" or (self.wire == "mixed" and self.sent % 2 == 1)
        if as_json:
            return orjson.dumps(event)
        return encode(self.store.current_event(event["type"]), event)

    async def send(self, event: dict[str, Any]) -> None:
        topic = self.topics.input(event["type"])
        await self.producer.send(topic, self.encode(event), key=event["event_id"].encode())
        self.sent += 1

    async def send_all(self, events: Iterable[dict[str, Any]]) -> int:
        futures = []
        for event in events:
            topic = self.topics.input(event["type"])
            futures.append(
                await self.producer.send(topic, self.encode(event), key=event["event_id"].encode())
            )
            self.sent += 1
            if len(futures) >= 10_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
        return self.sent

    async def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        await (await self.producer.send(topic, value, key=key))


async def paced(events: Iterable[dict[str, Any]], rate: float) -> AsyncIterator[dict[str, Any]]:
    """Yield events at `rate` per second (in bursts of up to 1/20 s)."""
    start = time.monotonic()
    for i, event in enumerate(events):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0.05:
            await asyncio.sleep(delay)
        yield event
