"""Publishing many small records fast: one record batch per topic partition per call.

`AIOKafkaProducer.send` costs ~20 µs a record in Python (metadata wait, the pure-Python
murmur2 partitioner, a future per record). The scorer publishes hundreds of records per
emit, so they are appended to aiokafka's compiled record-batch builders instead, one batch
per (topic, partition), and each batch is one `send_batch`. A record without a timestamp gets
the send time. A record without an explicit
partition goes to `crc32(key) % partitions`: stable per key, which is what compaction and
per-key ordering need.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.contract.messages import Message
from streams.kafka_security import client_kwargs
from streams.settings import Settings


def batch_producer(settings: Settings, bootstrap: str) -> AIOKafkaProducer:
    """The producer of the ingest and of the publication: large requests and batches (an
    envelope carries up to thousands of events), a short linger."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **client_kwargs(settings),
        linger_ms=5,
        acks="all",  # state changelogs go through it: a leader change must not lose them
        max_request_size=8 * 1024 * 1024,
        max_batch_size=1024 * 1024,
    )


class BatchSender:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self._partitions: dict[str, int] = {}

    async def _count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            found = await self.producer.partitions_for(topic)
            count = self._partitions[topic] = len(found) if found else 1
        return count

    async def send(self, messages: Iterable[Message]) -> dict[tuple[str, int], int]:
        """Send in order (per partition) and wait until the broker has all of them; returns
        the offset of the last record sent to each (topic, partition)."""
        open_batches: dict[tuple[str, int], Any] = {}
        full: list[tuple[str, int, Any]] = []
        for topic, value, key, partition, timestamp in messages:
            if partition is None:
                partition = zlib.crc32(key) % await self._count(topic) if key else 0
            target = (topic, partition)
            batch = open_batches.get(target)
            if batch is None:
                batch = open_batches[target] = self.producer.create_batch()
            if batch.append(key=key, value=value, timestamp=timestamp) is None:
                full.append((topic, partition, batch))  # keeps the partition's order
                batch = open_batches[target] = self.producer.create_batch()
                if batch.append(key=key, value=value, timestamp=timestamp) is None:
                    raise ValueError(f"a record of {len(value or b'')} bytes does not fit a batch")
        full.extend((topic, partition, batch) for (topic, partition), batch in open_batches.items())
        # a partition's full batches were listed before its open one: order is kept
        full.sort(key=lambda item: (item[0], item[1]))
        futures = [
            await self.producer.send_batch(batch, topic, partition=partition)
            for topic, partition, batch in full
        ]
        last: dict[tuple[str, int], int] = {}
        if futures:
            sent = await asyncio.gather(*futures)
            for (topic, partition, batch), metadata in zip(full, sent, strict=True):
                # a batch's metadata carries its base offset
                last[(topic, partition)] = metadata.offset + batch.record_count() - 1
        return last


class QueuedWrites:
    """Writes queued, then sent in order, one send at a time (two concurrent sends could
    interleave a partition's batches). A send that fails puts its writes back in front of the
    queue: the next send carries them again, before anything queued later. So a send that
    succeeds means every write queued before it is on the broker, whatever failed before."""

    def __init__(self) -> None:
        self._queued: list[Message] = []
        self._last: asyncio.Future[dict[tuple[str, int], int]] | None = None

    def queue(self, message: Message) -> None:
        self._queued.append(message)

    def send(self, sender: BatchSender) -> asyncio.Future[dict[tuple[str, int], int]]:
        """Send what is queued after the previous send; done (with the offsets written) when
        the broker has every write queued so far."""
        self._last = asyncio.ensure_future(self._send(self._last, sender))
        return self._last

    async def _send(
        self, previous: asyncio.Future[Any] | None, sender: BatchSender
    ) -> dict[tuple[str, int], int]:
        if previous is not None:
            # its failure is reported to its own caller; its writes are queued again
            with contextlib.suppress(Exception):
                await previous
        # taken now: writes queued while the previous send was confirmed go out too
        queued, self._queued = self._queued, []
        if not queued:
            return {}
        try:
            return await sender.send(queued)
        except BaseException:
            self._queued[:0] = queued
            raise

    async def confirm(self) -> None:
        """Wait for the latest send (raises if it failed)."""
        if self._last is not None:
            await self._last


class SendTracker:
    """Sends not yet confirmed by the broker, which any number of callers can wait for.

    Each `confirm()` waits for every send tracked before it was called, including the ones
    another caller is already waiting for (a rebalance must not go on while the agent's own
    confirmation is still pending).
    """

    def __init__(self) -> None:
        self._sent: list[asyncio.Future[Any]] = []

    def track(self, future: Any) -> Any:
        self._sent.append(future)
        return future

    async def confirm(self) -> None:
        sent = list(self._sent)
        if not sent:
            return
        await asyncio.gather(*sent)  # a failed send raises here, and stays tracked
        confirmed = {id(f) for f in sent}  # sends tracked during the wait stay
        self._sent = [f for f in self._sent if id(f) not in confirmed]
