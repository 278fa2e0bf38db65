"""Work-arounds for the embedded broker (Tansu 0.6), on only where it is used.

`Settings.workarounds` decides: on with the embedded broker (no `CEMI_BROKER_URL`), off
against a broker URL unless `CEMI_BROKER_WORKAROUNDS=true` (`cemi broker` prints that beside
its URL). Items 1-3 are the broker's; they are applied only then:

1. `ListOffsets(latest)` returns the base offset of the last record batch + 1, not the end:
   Faust takes it as the table-recovery target and would recover stale tables. The true end
   is the high watermark of a Fetch response; on Kafka both agree.
2. Tansu's first group generation is 0 and aiokafka sends LeaveGroup only above 0, so a
   member stopped in generation 0 lingers and the next one waits a session timeout.
3. Tansu answers a fetch it parked (nothing to read yet) after about half its max wait, not
   when records arrive. Faust's consumer asks for 1.5 s: each time the worker's fetches found
   its partitions drained or paused (a full agent buffer), envelopes already on the broker
   waited ~0.75 s, and the fold sat idle for a third of a catch-up. Ours asks for 0.1 s, as
   the ingest does; on Kafka this only means more empty fetches of an idle worker.

And two for Faust itself, on any broker (they fix Faust, not the broker):

4. Faust's producer `flush()` (before a recovery reads the changelogs' ends) gives up on its
   send buffer when a message takes over 0.1 s to be handed on, which a loaded worker easily
   does; a table write sent after that reading is overwritten by the recovery. Ours drains.
5. After a recovery Faust resumes each partition at the group's committed offset. An app can
   set `resume_positions(tps) -> {tp: offset}` on itself: a partition whose recovered state
   holds less than that offset says so, and is resumed at its own position instead.

Faust gets them through transports registered under two URL schemes: `cemi` (4 and 5) and
`cemi-embedded` (all five); `faust_broker_url` picks one.

Three readings of internals live here too, so that every use of a private API is in this
module: whether Faust's tables are recovered (`tables_recovered`), how many fetched messages
its channels hold (`fetched_not_taken`), and a group's committed offsets in one request
(`committed_offsets`, aiokafka's coordinator).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, NoError, for_code
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.group import JoinGroupRequest, LeaveGroupRequest
from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)
SCHEME = "cemi"  # Faust's own fixes (4, 5)
EMBEDDED_SCHEME = "cemi-embedded"  # and the embedded broker's work-arounds (1-3)
FLUSH_TIMEOUT_S = 30.0
FETCH_MAX_WAIT_MS = 100  # the worker consumer's fetch wait (see 3. above)


async def true_end_offsets(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """End offsets from the Fetch high watermark (never below ListOffsets' answer).

    The fetch starts at the ListOffsets value with max_bytes 1, so at most one batch comes
    back; max_wait must be >= 1 ms (Tansu answers a zero-wait fetch with nothing). The
    consumer's assignment and positions are left alone.
    """
    tps = list(partitions)
    if not tps:
        return {}
    listed = cast(dict[TopicPartition, int], await consumer.end_offsets(tps))
    client = consumer._client
    by_node: dict[int, dict[str, list[tuple[int, int, int]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for tp in tps:
        node = client.cluster.leader_for_partition(tp)
        if node is None or node == -1:
            await client.force_metadata_update()
            node = client.cluster.leader_for_partition(tp)
        by_node[node][tp.topic].append((tp.partition, max(listed.get(tp, 0), 0), 1))
    highwaters: dict[TopicPartition, int] = {}

    async def fetch(node: int, topics: Mapping[str, list[tuple[int, int, int]]]) -> None:
        isolation = consumer._fetcher._isolation_level
        request = FetchRequest(1, 0, 1, isolation, list(topics.items()))
        response: Any = await client.send(node, request)
        for topic, parts in response.topics:
            for partition, error_code, highwater, *_ in parts:
                error = for_code(error_code)
                if error is not NoError:
                    raise error(f"fetch high watermark of {topic}[{partition}]")
                highwaters[TopicPartition(topic, partition)] = highwater

    try:
        await asyncio.gather(*(fetch(n, t) for n, t in by_node.items()))
    except (KafkaError, ValueError, TypeError) as error:  # unexpected response layout
        log.warning("high watermark fetch failed (%r); using ListOffsets", error)
        return listed
    return {tp: max(highwaters.get(tp, -1), listed[tp]) for tp in tps if tp in listed}


async def end_offsets(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition], workarounds: bool
) -> dict[TopicPartition, int]:
    """The partitions' end offsets: ListOffsets, or with the work-arounds (1.) the fetch
    high watermark."""
    if workarounds:
        return await true_end_offsets(consumer, partitions)
    return cast(dict[TopicPartition, int], await consumer.end_offsets(list(partitions)))


def adapt_consumer(consumer: AIOKafkaConsumer, workarounds: bool) -> None:
    """A started aiokafka group consumer of ours, with the work-arounds when they are on (2.)."""
    if workarounds:
        leave_group_in_generation_zero(consumer)


def leave_group_in_generation_zero(consumer: AIOKafkaConsumer) -> None:
    """Make a started consumer send LeaveGroup on stop even in generation 0 (Tansu)."""
    coordinator = consumer._coordinator
    if coordinator is None:
        return
    original = coordinator._maybe_leave_group

    async def maybe_leave_group() -> None:
        if (
            coordinator.generation == 0
            and coordinator._group_instance_id is None
            and coordinator.member_id != JoinGroupRequest.UNKNOWN_MEMBER_ID
        ):
            try:
                await coordinator._send_req(
                    LeaveGroupRequest(coordinator.group_id, coordinator.member_id)
                )
            except KafkaError as error:
                log.warning("LeaveGroup (generation 0) failed: %r", error)
        await original()

    coordinator._maybe_leave_group = maybe_leave_group


class _EmbeddedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by start(), for its fetcher
        return consumer

    async def _highwaters(self, partitions: list[TopicPartition]) -> Mapping[TopicPartition, int]:
        consumer = self._ensure_consumer()
        if self.consumer.in_transaction:
            return {tp: consumer.last_stable_offset(tp) for tp in partitions}
        return await true_end_offsets(consumer, partitions)

    async def on_start(self) -> None:
        await super().on_start()
        leave_group_in_generation_zero(self._consumer)


class _Consumer(faust_aiokafka.Consumer):
    async def seek_to_committed(self) -> Mapping[Any, int]:
        """Faust's `perform_seek` after every recovery: the committed offsets, except where
        the app's recovered state asks to resume earlier."""
        committed = dict(await super().seek_to_committed())
        positions = getattr(self.app, "resume_positions", None)
        if positions is None:
            return committed
        for tp, position in positions(set(committed)).items():
            current = committed.get(tp)
            if current is not None and 0 <= position < current:
                log.warning(
                    "%s[%d]: resuming at %d, before the committed %d (the recovered state "
                    "is older)", tp.topic, tp.partition, position, current,
                )  # fmt: skip
                await self._seek(tp, position)
                committed[tp] = position
        return committed


class _Producer(faust_aiokafka.Producer):
    async def flush(self) -> None:
        buffer = self.buffer
        deadline = asyncio.get_running_loop().time() + FLUSH_TIMEOUT_S
        while buffer.size and asyncio.get_running_loop().time() < deadline:
            await buffer.flush()  # returns early when a message takes over 0.1 s
        if buffer.size:
            log.error(
                "producer buffer not drained in %s s: %d messages", FLUSH_TIMEOUT_S, buffer.size
            )
        await super().flush()


class _EmbeddedConsumer(_Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _EmbeddedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer
    Producer = _Producer


class EmbeddedTransport(faust_aiokafka.Transport):
    Consumer = _EmbeddedConsumer
    Producer = _Producer


def register_transport() -> None:
    """Faust apps with `broker="cemi://..."` or `"cemi-embedded://..."` use ours."""
    drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
    drivers.TRANSPORTS.aliases[EMBEDDED_SCHEME] = f"{__name__}:EmbeddedTransport"


def faust_broker_url(bootstrap: str, workarounds: bool) -> str:
    """Faust's broker URL for `host:port,host:port` (Faust separates servers with `;`)."""
    scheme = EMBEDDED_SCHEME if workarounds else SCHEME
    return ";".join(f"{scheme}://{server}" for server in bootstrap.split(","))


def tables_recovered(app: Any) -> bool:
    """The worker's assigned table partitions are recovered and no rebalance is under way."""
    # Faust: `completed` is set once the first recovery is done (and never cleared);
    # later rebalances show as `rebalancing`, a recovery asked for but not yet started as
    # `signal_recovery_start`, one under way as `in_recovery`.
    recovery = getattr(getattr(app, "tables", None), "recovery", None)
    completed = getattr(recovery, "completed", None)
    pending = getattr(recovery, "signal_recovery_start", None)
    return bool(
        completed is not None
        and completed.is_set()
        and not (pending is not None and pending.is_set())
        and not getattr(app, "rebalancing", False)
        and not getattr(app, "in_recovery", False)
    )


def fetched_not_taken(topic: Any) -> int:
    """Messages of a topic that Faust fetched and its agents have not taken yet (the queues
    of the channels iterating it)."""
    return sum(channel.queue.qsize() for channel in getattr(topic, "_subscribers", ()))


async def committed_offsets(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> Any:
    """The consumer's group's committed offsets of `tps` in one request (aiokafka's public
    `committed` asks once per partition); partitions without a commit are left out."""
    return await consumer._coordinator.fetch_committed_offsets(tps)
