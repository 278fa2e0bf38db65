"""The ingest stage: input batches -> decoded, validated events -> one envelope per unit.

It runs inside the worker (a Faust service) on its own aiokafka consumer, because Faust's
per-message machinery costs ~100x more than the work done per event here. Per batch:
decode, validate, dead-letter what fails (with the original bytes and the reason), compute
KPI contributions, publish one envelope per unit to the unit-keyed envelope topic, and only
then commit the input offsets (at-least-once; the scoring state skips replays by guard).
The fetch loop, the merge across partitions and the batch's flow share one consumer and its
positions, so they stay in one module (the merge's ordering rule is `streams.ingest.align`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from streams.contract.envelope import encode_envelope, entry_for, partition_for, source_key
from streams.core.events import (
    InvalidEvent,
    pseudonymise,
    pseudonymous_ref,
    validate_event,
    without_literals,
)
from streams.core.plan import ScoringPlan
from streams.core.programmes import check_update
from streams.ingest.align import Aligner
from streams.kafka_security import client_kwargs
from streams.settings import Settings
from streams.topics import Topics
from streams.wire.codec import EventDecoder
from streams.wire.outputs import OutputCodec
from streams.wire.schemas import SchemaStore
from streams.worker.kafka_compat import adapt_consumer, committed_offsets, end_offsets

log = logging.getLogger(__name__)
ALIGN_MAX_WAIT_S = 5.0  # how long a partition with data on the broker may hold the merge
INGEST_REPORT_S = 10.0
STOP_TIMEOUT_S = 15.0  # a clean stop waits this long for in-flight batches
MAX_IN_FLIGHT = 3  # ingest batches sent but not yet acknowledged
MAX_ENVELOPE_ENTRIES = 2_000  # keeps an envelope well under the broker's message size limit
PARTITION_CACHE_UNITS = 100_000
GROUP_BACKLOG_REFRESH_S = 2.0
# What one input partition may hold in memory (fetched, or in the merge waiting for slower
# partitions) is bounded by these two, so a dense backlog does not raise the worker's memory.
FETCH_BYTES_PER_PARTITION = 1024 * 1024
MERGE_BATCHES_PER_PARTITION = 1  # ingest batches buffered per partition before it is paused

# What the ingest keeps of a fetched record while it waits in the merge: (timestamp, offset,
# key, value), an exact tuple of ints and bytes. The cycle collector stops tracking such a
# tuple at its first young collection; aiokafka's ConsumerRecord stays tracked, and the
# ~140,000 of them the merge holds made each full collection of the ingest child take
# 60-140 ms (38 of them, 6.3 of its ~20 CPU-s, in a 1M-event benchmark run).
Held = tuple[int, int, bytes | None, bytes | None]
held = attrgetter("timestamp", "offset", "key", "value")


@dataclass
class IngestStats:
    consumed: int = 0
    enveloped: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    turns: int = 0  # of the fetch loop: fetches, including those that released nothing
    # per input (topic, partition): fetch high watermark - position + buffered records
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    running: bool = False  # its consumer started, and not stopped


class _DropOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Buffered records of revoked partitions are dropped: the new owner re-reads them. After
    an assignment the group's backlog is read again at once."""

    def __init__(self, aligner: Aligner[TopicPartition], backlog: GroupBacklog | None) -> None:
        self.aligner = aligner
        self.backlog = backlog

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.aligner.drop(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if self.backlog is not None:
            self.backlog.assigned()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.backlog.refresh(force=True), timeout=5)


class GroupBacklog:
    """The input partitions with records the ingest group has not committed, all of them.

    Each envelope says which sources still have records to read, and such a source holds the
    watermark. An ingest knows that first-hand only for the partitions assigned to it; while
    the group rebalances (a worker joining or leaving) some partitions are read by nobody, and
    a fast source elsewhere would otherwise run the watermark past their unread records (which
    then came out late). So every ingest also reports the group's backlog: committed offset
    behind the end, whoever owns the partition.
    """

    def __init__(
        self, consumer: AIOKafkaConsumer, topics: list[str], workarounds: bool = False
    ) -> None:
        self.consumer = consumer
        self.topics = topics
        self.workarounds = workarounds
        self.behind: set[str] = set()
        # read since the last assignment: until then no envelope goes out (it would let the
        # fold's watermark run ahead of the other ingests' unread partitions)
        self.ready = False
        self._next = 0.0

    def assigned(self) -> None:
        """The group's partitions moved: the view must be read again before sending."""
        self.ready = False

    async def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and self.ready and now < self._next:
            return
        self._next = now + GROUP_BACKLOG_REFRESH_S
        tps = [
            TopicPartition(topic, partition)
            for topic in self.topics
            for partition in sorted(self.consumer.partitions_for_topic(topic) or ())
        ]
        if not tps:
            return
        try:
            committed = await committed_offsets(self.consumer, tps)
            ends = await end_offsets(self.consumer, tps, self.workarounds)
        except Exception as error:  # the view is kept until the next refresh succeeds
            log.debug("group backlog not refreshed: %r", error)
            return
        behind = set()
        for tp in tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            if ends.get(tp, 0) > done:
                behind.add(source_key(tp.topic, tp.partition))
        self.behind = behind
        self.ready = True


class Ingest:
    """Consumes the input topics in batches and publishes envelopes and dead letters."""

    def __init__(
        self,
        settings: Settings,
        plan: ScoringPlan,
        store: SchemaStore,
        bootstrap: str,
        producer: AIOKafkaProducer,
    ) -> None:
        self.settings = settings
        self.plan = plan
        self.topics = Topics(settings)
        self.decoder = EventDecoder(store, settings.max_event_bytes)
        # in the output format (after a registry's framing, which the store already holds)
        self.encode_dead_letter = OutputCodec(store, settings.output_format).encoder("DeadLetter")
        self.bootstrap = bootstrap
        self.producer = producer
        self.stats = IngestStats()
        self._partition_of: dict[str, int] = {}
        self.envelope_partitions = settings.partitions
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()

    def consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            **client_kwargs(self.settings),
            group_id=f"{self.settings.app_id}-ingest",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.settings.ingest_batch_events,
            fetch_max_wait_ms=100,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            rebalance_timeout_ms=10_000,
            max_partition_fetch_bytes=FETCH_BYTES_PER_PARTITION,
        )

    async def run(self) -> None:
        batch = self.settings.ingest_batch_events
        aligner: Aligner[TopicPartition] = Aligner(max_wait_s=ALIGN_MAX_WAIT_S)
        consumer = self.consumer()
        group_backlog = GroupBacklog(consumer, self.topics.inputs, self.settings.workarounds)
        consumer.subscribe(self.topics.inputs, listener=_DropOnRevoke(aligner, group_backlog))
        await consumer.start()
        self.stats.running = True
        adapt_consumer(consumer, self.settings.workarounds)
        found = await self.producer.partitions_for(self.topics.envelopes)
        self.envelope_partitions = len(found) if found else self.settings.partitions
        paused: set[TopicPartition] = set()
        waiting: set[TopicPartition] = set()
        in_flight: deque[tuple[asyncio.Future[Any], dict[TopicPartition, int]]] = deque()
        next_report = time.monotonic() + INGEST_REPORT_S
        try:
            while not self._stopping.is_set():
                if time.monotonic() >= next_report:  # progress in the log, for diagnosis
                    next_report = time.monotonic() + INGEST_REPORT_S
                    log.info(
                        "ingest: consumed %d in %d batches (%d turns), %d in flight, waiting on "
                        "%d of %d partitions, %d buffered, %d paused",
                        self.stats.consumed,
                        self.stats.batches,
                        self.stats.turns,
                        len(in_flight),
                        len(waiting),
                        len(consumer.assignment()),
                        sum(aligner.buffered(tp) for tp in consumer.assignment()),
                        len(paused),
                    )
                # Fetch the partitions the merge waits for first: a consumer's fetches are
                # not fair across partitions, and the merge must not run ahead of them.
                fetched = await consumer.getmany(*waiting, timeout_ms=100, max_records=batch)
                self.stats.turns += 1
                for tp, records in fetched.items():
                    aligner.add(tp, map(held, records))
                assigned = consumer.assignment()
                caught_up = set()
                lag: dict[tuple[str, int], int] = {}
                on_broker: dict[TopicPartition, int] = {}  # past the position
                for tp in assigned:
                    highwater = consumer.highwater(tp)
                    if highwater is None:
                        continue
                    position = await consumer.position(tp)
                    on_broker[tp] = highwater - position
                    # not yet processed: on the broker past the position, plus buffered here
                    buffered = aligner.buffered(tp)
                    lag[(tp.topic, tp.partition)] = highwater - position + buffered
                    if not buffered and position >= highwater:
                        caught_up.add(tp)
                self.stats.lag = lag
                waiting = aligner.waiting(assigned, caught_up.__contains__, time.monotonic())
                if waiting:
                    continue
                await group_backlog.refresh()
                # A partition the release empties is caught up if nothing of it is left on
                # the broker (the set above was taken before the release: with it, the merge
                # stopped at each partition reaching its end, one fetch timeout per turn).
                at_end = {tp for tp, left in on_broker.items() if left <= 0}
                # nothing goes out before the group's view was read since the assignment
                # (retried at every turn; fetching stays bounded by the pauses below)
                released = (
                    aligner.release(at_end.__contains__, batch) if group_backlog.ready else []
                )
                if released:
                    # sources with records left after this batch (on the broker or here)
                    behind = {
                        source_key(tp.topic, tp.partition)
                        for tp in assigned
                        # unknown (not fetched yet) counts as behind
                        if tp not in on_broker or on_broker[tp] + aligner.buffered(tp) > 0
                    }
                    # and the group's other partitions with records nobody committed yet
                    mine = {source_key(tp.topic, tp.partition) for tp in assigned}
                    others = group_backlog.behind - mine
                    next_event_ms = await self.next_event_times(
                        {tp: aligner.next_record(tp) for tp in assigned}
                    )
                    acked = await self.send(released, behind, assigned, others, next_event_ms)
                    offsets: dict[TopicPartition, int] = {}
                    for tp, (_, offset, _, _) in released:
                        offsets[tp] = offset + 1
                    in_flight.append((acked, offsets))
                # Pipelined: the next batch is decoded while the broker acknowledges this
                # one; offsets are committed in batch order, each once its envelopes are in.
                while in_flight and (in_flight[0][0].done() or len(in_flight) > MAX_IN_FLIGHT):
                    acked, offsets = in_flight.popleft()
                    await acked
                    await self._commit(consumer, offsets)
                # Bound what waits in memory: stop fetching partitions far ahead of the others.
                for tp in assigned:
                    full = aligner.buffered(tp) > MERGE_BATCHES_PER_PARTITION * batch
                    if full and tp not in paused:
                        consumer.pause(tp)
                        paused.add(tp)
                    elif not full and tp in paused:
                        consumer.resume(tp)
                        paused.discard(tp)
            for acked, offsets in in_flight:  # a clean stop: what was sent is committed
                await acked
                await self._commit(consumer, offsets)
        finally:
            self.stats.running = False
            await consumer.stop()
            self._stopped.set()

    async def next_event_times(self, heads: dict[TopicPartition, Held | None]) -> dict[str, int]:
        """Where each source goes on: the event time of its next record, for the sources
        whose next record the merge holds (`heads`) and is valid (else it is dead-lettered
        when released). The fold holds a source behind no earlier than that."""
        await self.decoder.prefetch(head[3] for head in heads.values() if head is not None)
        latest_ms = int(time.time() * 1000) + self.settings.max_future_ms
        out: dict[str, int] = {}
        for tp, head in heads.items():
            if head is None:
                continue
            try:
                event_time = validate_event(self.decoder.decode(head[3]))["event_time"]
            except InvalidEvent:
                continue
            if event_time <= latest_ms:  # else dead-lettered as from the future
                out[source_key(tp.topic, tp.partition)] = event_time
        return out

    @staticmethod
    async def _commit(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # partitions moved in a rebalance: their new owner re-reads from the last commit
            # and the scoring state skips what was already applied
            log.warning("input offsets not committed after a rebalance: %s", error)

    def stop(self) -> None:
        self._stopping.set()

    async def stopped(self) -> None:
        """Wait for `run()` to end after `stop()` (in-flight batches committed)."""
        if self.stats.running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), STOP_TIMEOUT_S)

    async def process(
        self,
        released: list[tuple[TopicPartition, Held]],
        behind: set[str] | None = None,
        assigned: set[TopicPartition] | None = None,
    ) -> None:
        """Records in merge order -> envelopes and dead letters, sent and acknowledged."""
        await (await self.send(released, behind, assigned))

    async def send(
        self,
        released: list[tuple[TopicPartition, Held]],
        behind: set[str] | None = None,
        assigned: set[TopicPartition] | None = None,
        group_behind: set[str] | None = None,
        next_event_ms: dict[str, int] | None = None,
    ) -> asyncio.Future[Any]:
        """Records in merge order -> envelopes and dead letters, sent; the returned future
        completes when the broker has acknowledged all of them."""
        # writer schemas of new registry ids are fetched off the loop first (no-op without)
        await self.decoder.prefetch(value for _, (_, _, _, value) in released)
        decode, validate, contributions = (
            self.decoder.decode,
            validate_event,
            self.plan.contributions,
        )
        now_ms = int(time.time() * 1000)
        latest_ms = now_ms + self.settings.max_future_ms
        partitions = self.envelope_partitions
        programmes = self.plan.programmes
        by_partition: dict[int, list[list[Any]]] = {}
        outgoing: list[tuple[str, bytes, bytes | None, int | None]] = []
        for tp, (timestamp, offset, key, value) in released:
            try:
                event = validate(decode(value))
                if event["event_time"] > latest_ms:
                    raise InvalidEvent("future_time", "event_time is too far in the future")
                if event["type"] == "programme_update":
                    check_update(programmes, event)
                unit = event["unit"]
            except InvalidEvent as error:
                outgoing.append(self._dead_letter(tp, offset, key, value, error, now_ms))
                continue
            partition = self._partition_of.get(unit)
            if partition is None:
                # the unit cap is the fold's (one decision where the unit's state lives);
                # this cache only must not grow without bound under made-up units
                if len(self._partition_of) >= PARTITION_CACHE_UNITS:
                    self._partition_of.clear()
                partition = self._partition_of[unit] = partition_for(unit, partitions)
            entries = by_partition.get(partition)
            if entries is None:
                entries = by_partition[partition] = []
            entries.append(
                entry_for(
                    event,
                    contributions(event),
                    tp.topic,
                    tp.partition,
                    offset,
                    timestamp,
                )
            )
        self.stats.consumed += len(released)
        envelopes = self.topics.envelopes
        # every envelope says which of this ingest's sources still have records to read
        behind_set = behind or set()
        lagging = sorted(behind_set)
        caught_up = sorted(
            {source_key(tp.topic, tp.partition) for tp in assigned or ()} - behind_set
        )
        others = sorted(group_behind or ())
        next_of_behind = {s: t for s, t in (next_event_ms or {}).items() if s in behind_set}
        for partition, entries in by_partition.items():
            for start in range(0, len(entries), MAX_ENVELOPE_ENTRIES):
                chunk = entries[start : start + MAX_ENVELOPE_ENTRIES]
                # where the sources go on is past the whole batch: said by its last envelope
                # only (the fold's watermark would run ahead of the next chunk's entries)
                last = start + MAX_ENVELOPE_ENTRIES >= len(entries)
                envelope = encode_envelope(
                    chunk, lagging, caught_up, others, next_of_behind if last else None
                )
                outgoing.append((envelopes, envelope, None, partition))
            self.stats.enveloped += len(entries)
        # Sent in order (a partition's envelopes keep batch order), then awaited together:
        # the input offsets are committed only once all of them are acknowledged.
        futures = [
            await self.producer.send(topic, value, key=key, partition=partition)
            for topic, value, key, partition in outgoing
        ]
        self.stats.batches += 1
        return asyncio.gather(*futures)

    def _dead_letter(
        self,
        tp: TopicPartition,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        error: InvalidEvent,
        now_ms: int,
    ) -> tuple[str, bytes, bytes | None, int | None]:
        self.stats.dead_lettered[error.code] += 1
        original = value if isinstance(value, bytes) else b""
        original_key = key if isinstance(key, bytes) else None
        reason = error.text
        if self.settings.hmac_key is not None:
            original, original_key, reason = self._pseudonymous(original, original_key, reason)
        body = self.encode_dead_letter(
            {
                "original": original,
                "original_key": original_key,
                "source_topic": tp.topic,
                "source_partition": tp.partition,
                "source_offset": offset,
                "reason_code": error.code,
                "reason": reason[:1000],
                "dead_lettered_at_ms": now_ms,
            },
        )
        dead_letter_key = f"{tp.topic}#{tp.partition}#{offset}".encode()
        return self.topics.output("deadletter"), body, dead_letter_key, None

    def _pseudonymous(
        self, value: bytes, key: bytes | None, reason: str
    ) -> tuple[bytes, bytes | None, str]:
        """With CEMI_CUSTOMER_REF_HMAC_KEY, no raw customer_ref leaves in a dead letter: a
        decodable original is re-encoded as JSON with customer_ref replaced by its HMAC; an
        undecodable one is withheld (it stays readable at its source offset); the record key
        is replaced by its HMAC and quoted literals are dropped from the reason."""
        secret = self.settings.hmac_key
        assert secret is not None
        try:
            value = orjson.dumps(pseudonymise(self.decoder.decode(value), secret), default=repr)
        except (InvalidEvent, orjson.JSONEncodeError):
            value = b""
            reason += " (original withheld: CEMI_CUSTOMER_REF_HMAC_KEY is set)"
        if key is not None:
            key = pseudonymous_ref(key, secret).encode()
        return value, key, without_literals(reason)
