"""What the worker's agents and emit task do with one event or tick (`create_app` wires them
to Faust): the envelope fold with its deferred acks, the network level, publication."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from faust.types import TP

from streams.scoring.network import NetworkState, decode_summary
from streams.scoring.service import EmitPace
from streams.worker import faults
from streams.worker.kafka_compat import fetched_not_taken, tables_recovered
from streams.worker.resync import Resync
from streams.worker.runtime import Runtime
from streams.worker.tables import AckAfterPersist, ConfirmingTable, log_unconfirmed

log = logging.getLogger(__name__)
MAX_UNCONFIRMED_FLUSHES = 1  # flushes the fold runs ahead of the changelog's confirmation
# The units' summaries of one emit reach the network level as a burst: it publishes once the
# burst is over (no summary for NETWORK_QUIET_S), or at the latest NETWORK_MAX_WAIT_S after
# its first one, rather than re-ranking a window for every part of the burst.
NETWORK_QUIET_S = 0.15
NETWORK_MAX_WAIT_S = 1.0


class EnvelopeFold:
    """The `score` agent: each envelope into its partition's state; a flush's envelopes are
    acknowledged once the changelog holds its writes."""

    def __init__(
        self, app: Any, runtime: Runtime, table: ConfirmingTable, topic: Any, resync: Resync
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.table = table
        self.topic = topic
        self.resync = resync
        self.confirming: list[asyncio.Future[None]] = []  # the flush being confirmed, if any
        self.acks = AckAfterPersist()

    def load(self) -> list[tuple[str, bytes]]:
        return list(self.table.items())

    async def on_event(self, event: Any) -> None:
        runtime, message = self.runtime, event.message
        # Faust's own TP: message.tp is aiokafka's TopicPartition, which Faust's
        # resume_partitions would put in its active set as is (and then crash on)
        tp = TP(message.topic, message.partition)
        expected = runtime.scoring.next_offset(message.partition, self.load)
        if expected is not None and message.offset > expected:
            # Faust skipped envelopes: read again from the expected one
            self.resync.skipped(tp, expected, message.offset, time.monotonic())
            return  # not acknowledged: delivered again after the missing ones
        self.resync.arrived(tp)
        try:  # envelopes waiting behind this one: the fold is catching up
            waiting = self.app.consumer.highwater(message.tp) - message.offset - 1
        except Exception:  # no fetch position yet
            waiting = 0
        # A partition whose buffer is full is paused by Faust and not fetched, so its
        # high watermark stops moving: envelopes already fetched count as waiting too.
        waiting = max(waiting, fetched_not_taken(self.topic))
        flushed = runtime.scoring.on_envelope(
            message.partition,
            event.value,
            event,
            self.load,
            self.table.put,
            backlog=waiting > 1,
            offset=message.offset,
        )
        if flushed:
            while runtime.state_sender is None:  # the worker is starting
                await asyncio.sleep(0.1)
            # The fold goes on while the broker confirms a flush (a catch-up's flush writes
            # megabytes of seen ids); it waits only when the flush before is not confirmed
            # yet. A failed one is logged; its writes go out with the next.
            acknowledging = asyncio.ensure_future(
                self.acks.acknowledge(self.table.persist(runtime.state_sender), flushed)
            )
            acknowledging.add_done_callback(log_unconfirmed)
            confirming = self.confirming
            confirming.append(acknowledging)
            while confirming and (
                confirming[0].done() or len(confirming) > MAX_UNCONFIRMED_FLUSHES
            ):
                with contextlib.suppress(Exception):
                    await confirming.pop(0)


class NetworkFold:
    """The `network` agent: one message per unit window publication. Table writes happen
    inside the iteration (Faust picks the changelog partition from the current event); their
    confirmation and the acks are batched on a timer (`confirm`), not awaited per message."""

    def __init__(self, runtime: Runtime, table: ConfirmingTable, allowed_lateness_ms: int) -> None:
        self.runtime = runtime
        self.table = table
        self.allowed_lateness_ms = allowed_lateness_ms
        self.unconfirmed: list[Any] = []  # events whose table writes are not sent yet
        self.acks = AckAfterPersist()
        self.last_event_s = 0.0  # monotonic time of the last summary folded
        self.burst_since_s: float | None = None  # of the first one not published yet

    def settling(self, now_s: float) -> bool:
        """A burst of summaries is still arriving (and has not waited too long)."""
        return (
            self.burst_since_s is not None
            and now_s - self.last_event_s < NETWORK_QUIET_S
            and now_s - self.burst_since_s < NETWORK_MAX_WAIT_S
        )

    def published(self) -> None:
        self.burst_since_s = None

    def on_event(self, event: Any) -> None:
        runtime = self.runtime
        if runtime.network is None:  # first event since the start or a rebalance
            runtime.network = NetworkState(runtime.plan, self.allowed_lateness_ms)
            for value in list(self.table.values()):
                runtime.network.add(decode_summary(value))
        if runtime.network.add(decode_summary(event.value)):
            self.table.put(event.key.decode(), event.value)
        self.last_event_s = time.monotonic()
        if self.burst_since_s is None:
            self.burst_since_s = self.last_event_s
        for key in runtime.network.expire():
            self.table.put(key, None)
        self.unconfirmed.append(event)

    async def confirm(self) -> None:
        """Acknowledge (so commit) the events once the changelog holds what they wrote; after
        a failed send, the next call sends the writes again even without new events."""
        if self.runtime.state_sender is None or not (self.unconfirmed or self.acks.waiting):
            return
        events = self.unconfirmed[:]
        self.unconfirmed.clear()
        try:
            await self.acks.acknowledge(self.table.persist(self.runtime.state_sender), events)
        except Exception as error:
            log.warning("network table writes not confirmed (%r): sent again", error)


class Emitter:
    """The emit task: coalesced publication of the partitions' changed and closing windows,
    outboxes and flush ticks, and the network level's records."""

    def __init__(
        self,
        app: Any,
        runtime: Runtime,
        fold: EnvelopeFold,
        network: NetworkFold,
        pace: EmitPace,
        tick_s: float,
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.fold = fold
        self.network = network
        self.pace = pace
        self.tick_s = tick_s

    async def run(self) -> None:
        # A task rather than a timer: a catch-up's publications outlast a tick, which a
        # timer logs as an overlap every time.
        while not self.app.should_stop:
            await asyncio.sleep(self.tick_s)
            await self.emit()

    async def emit(self) -> None:
        app, runtime = self.app, self.runtime
        started = time.monotonic()
        # A stopping worker publishes nothing more: it has left (or is leaving) the group,
        # and what it would publish now could land after the new owner's newer rows.
        if runtime.sender is None or app.should_stop:
            return
        # Catching up, publication waits its turn while envelopes are waiting for the fold;
        # with none waiting (the ingest is the slower stage) the fold would idle meanwhile.
        replaying = runtime.scoring.catching_up()
        catching_up = replaying and fetched_not_taken(self.fold.topic) > 0
        if not self.pace.due(started, catching_up, replaying):
            return
        if tables_recovered(app):
            # a partition's state is loaded when its first envelope arrives; one without new
            # input (a restart at the end of a stream, a quiet unit) is loaded here, so its
            # counts, scores, closing windows and alerts are served all the same
            envelopes = runtime.topics.envelopes
            owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == envelopes}
            runtime.scoring.revoke(p for p in list(runtime.scoring.partitions) if p not in owned)
            runtime.scoring.adopt(owned, self.fold.load)
        emitted = runtime.scoring.emit()
        messages = emitted.messages
        if app.should_stop:
            runtime.scoring.unsent(emitted)
            return
        # The network level's input (unit summaries, progress) goes first: it is published
        # as soon as it arrives, and would otherwise queue behind tens of thousands of
        # score records (a partition's batches go to the broker one after the other).
        unit_scores = runtime.topics.unit_scores
        network_input = [m for m in messages if m[0] == unit_scores]
        for kind in {kind for _, kind in emitted.kinds}:
            await faults.pause_then_kill(f"emit:{kind}")
        try:
            if network_input:
                rest = [m for m in messages if m[0] != unit_scores]
                await asyncio.gather(runtime.send(network_input), runtime.send(rest))
            else:
                await runtime.send(messages)
        except BaseException:
            runtime.scoring.unsent(emitted)
            raise
        runtime.scoring.sent(emitted)
        self.pace.published(started, time.monotonic(), catching_up)

    async def emit_network(self) -> None:
        """The network level publishes as soon as the unit summaries of an emit reached it,
        not at the emit after: one row per changed window, cheap to do this often."""
        runtime = self.runtime
        if runtime.network is None or runtime.sender is None or self.app.should_stop:
            return
        if self.network.settling(time.monotonic()):
            return
        self.network.published()
        published = runtime.network.publish(int(time.time() * 1000))
        outputs = runtime.outputs
        messages = [outputs.score_message(r, stamp) for r, stamp in published.records]
        messages.extend(outputs.standings_message(r, stamp) for r, stamp in published.standings)
        messages.extend(outputs.network_view_message(v) for v in published.views)
        if messages:
            runtime.scoring.published_records += len(published.records)  # score records too
            await runtime.send(messages)
