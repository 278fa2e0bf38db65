"""Sending events to the input topics (`cemi produce`, `cemi simulate`, tests, benchmarks).

Every record's Kafka timestamp is its event's `event_time`: the ingest merges its input
partitions in record-timestamp order, so a replay sent at full speed reaches the fold in
event-time order (stamped with the send time, a month replayed in a minute merged out of
order and turned events late).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Literal

import orjson
from aiokafka import AIOKafkaProducer

from streams.core.events import InvalidEvent, validate_event
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

    async def _send(self, event: dict[str, Any]) -> asyncio.Future[Any]:
        return await self.producer.send(  # type: ignore[no-any-return]
            self.topics.input(event["type"]),
            self.encode(event),
            key=event["event_id"].encode(),
            timestamp_ms=event["event_time"],
        )

    async def send(self, event: dict[str, Any]) -> None:
        await self._send(event)
        self.sent += 1

    async def send_all(self, events: Iterable[dict[str, Any]]) -> int:
        futures = []
        for event in events:
            futures.append(await self._send(event))
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


@dataclass
class FileReplay:
    """What `replay_lines` did: events sent, lines rejected (each reported)."""

    sent: int = 0
    rejected: int = 0


def valid_events(
    lines: Iterable[bytes],
    on_reject: Callable[[int, InvalidEvent], None],
    replay: FileReplay,
    on_line: Callable[[int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """The events of JSON lines that pass validation (the same check as `cemi score`, so a
    replay and the batch agree on what counts); each rejected line goes to `on_reject` with
    its number. `on_line` gets the bytes of each line read (progress)."""
    for lineno, line in enumerate(lines, start=1):
        if on_line is not None:
            on_line(len(line))
        if not line.strip():
            continue
        try:
            yield validate_event(orjson.loads(line))
        except orjson.JSONDecodeError as error:
            replay.rejected += 1
            on_reject(lineno, InvalidEvent("malformed", f"not a JSON object: {error}"))
        except InvalidEvent as error:
            replay.rejected += 1
            on_reject(lineno, error)


async def replay_file(
    producer: EventProducer,
    source: IO[bytes],
    on_reject: Callable[[int, InvalidEvent], None],
    on_line: Callable[[int], None] | None = None,
) -> FileReplay:
    """Send the valid events of a JSON-lines file, each stamped with its event time."""
    replay = FileReplay()
    before = producer.sent
    await producer.send_all(valid_events(source, on_reject, replay, on_line))
    replay.sent = producer.sent - before
    return replay
