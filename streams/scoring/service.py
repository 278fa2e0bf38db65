"""The scoring service: partition states, flushes with deferred acks, coalesced publication.

The Faust agent hands it each envelope; state lives in memory per partition and is written
to the changelog-backed table in flushes (the agent's writes must happen while it iterates an
event of that partition, Faust's rule for choosing the changelog partition). Envelopes are
acknowledged only after the flush that persisted them, so Faust never commits an offset whose
effect could be lost; what was applied but not flushed is simply replayed.

One module for the fold's flushes, the emit's publication and the outbox's confirmations:
all three step the same per-partition runtime (pending envelopes, pacing, the clock).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from streams.contract.envelope import read_envelope
from streams.contract.messages import Ackable, Message, Outputs
from streams.core.plan import ScoringPlan
from streams.scoring import programme_alerts
from streams.scoring.alerting import AlertEvaluator
from streams.scoring.expiry import expire, expire_slices
from streams.scoring.fold import PartitionState
from streams.scoring.persistence import flush, load_state
from streams.scoring.publish import MeansLookup, Publication, Publisher, record_topic_key
from streams.scoring.state import Counts, FoldConfig

log = logging.getLogger(__name__)
BACKLOG_FLUSH_FACTOR = 5
CATCH_UP_MS = 300_000  # a watermark this far behind the clock: replaying history, not live
CATCH_UP_PUBLISH_S = 15.0  # open windows' publication interval while catching up


def _wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class PartitionRuntime:
    state: PartitionState
    pending: list[Ackable] = field(default_factory=list)
    last_flush: float = field(default_factory=time.monotonic)
    last_envelope: float = field(default_factory=time.monotonic)
    busy_at_envelope: float = 0.0  # `ScoringService.busy_s` at the last envelope
    last_idle_advance: float = field(default_factory=time.monotonic)
    tick_sent: bool = False
    backlog: bool = False  # the last envelope said its sources had more on the broker
    progress_sent: int | None = None  # the watermark last sent to the network level
    last_open_publish: float = 0.0  # when open windows were last published
    # the outbox changed outside a fold (a confirmed send, an acknowledgement): a tick asks
    # the agent to flush it soon, not at the next envelope
    flush_wanted: bool = False


@dataclass
class Emitted:
    """What an emit publishes, and per partition the outbox entries among it (their seq up
    to which): `ScoringService.sent` once the broker has the messages, `unsent` if not."""

    messages: list[Message] = field(default_factory=list)
    outbox: dict[int, tuple[PartitionRuntime, int]] = field(default_factory=dict)
    kinds: set[tuple[int, str]] = field(default_factory=set)  # (partition, kind) of entries


def _replaying(runtime: PartitionRuntime, now_ms: int) -> bool:
    """The partition folds a backlog of history: more envelopes wait on the broker and its
    event time is well behind the clock (a live stream always has a few records left)."""
    return runtime.backlog and (runtime.state.watermark_ms or 0) < now_ms - CATCH_UP_MS


class EmitPace:
    """When the emit timer publishes. The timer ticks a few times per interval; a live
    stream or an idle fold publishes once per interval. Coalescing under load: while a
    backlog is folded, publication may take at most a quarter of the time, so a catch-up
    spends its CPU on folding and publishes less often (never less correctly: each
    publication reflects everything folded so far). A publication the catch-up postponed
    goes out at the first tick after the catch-up ends: waiting would only delay the
    scores."""

    def __init__(self, interval_s: float, tick_s: float | None = None) -> None:
        self.interval_s = interval_s
        self.tick_s = interval_s if tick_s is None else tick_s
        self.next_s = 0.0  # monotonic time before which nothing is published
        self.postponed = False  # a tick of the catch-up did not publish
        self.spaced = False  # the last publication was spaced out for a catch-up

    def due(self, now_s: float, catching_up: bool, replaying: bool | None = None) -> bool:
        """`catching_up`: publication would compete with the fold now. `replaying`: some
        partition is still folding a backlog (default: `catching_up`); once none is, a
        publication spaced out for the catch-up goes out at once, even when the catch-up
        ended before any tick postponed it (within the publication before, say)."""
        if now_s >= self.next_s or (self.postponed and not catching_up):
            return True
        if self.spaced and not (catching_up if replaying is None else replaying):
            return True
        if catching_up:
            self.postponed = True
        return False

    def published(self, started_s: float, ended_s: float, catching_up: bool) -> None:
        spacing = self.interval_s
        if catching_up:
            spacing = max(spacing, 4 * (ended_s - started_s))
        self.next_s = started_s + spacing - self.tick_s / 2
        self.postponed = False
        self.spaced = catching_up


def _apply(state: PartitionState, publication: Publication) -> None:
    """Write a publication's decisions into the partition's state (before expiry reads
    them): the revision and finality that went out, what is left to publish, baselines."""
    for key, decision in publication.decisions.items():
        window = state.windows[key]
        window.changed = decision.changed
        if decision.revision is not None:
            window.revision = decision.revision
            window.final = decision.final
            window.newest_ingest_ms = decision.newest_ingest_ms
            window.unsaved = True
    for (unit, at), points in publication.baselines.items():
        state.units[unit].baselines[at] = points


class ScoringService:
    def __init__(
        self,
        plan: ScoringPlan,
        config: FoldConfig,
        outputs: Outputs,
        *,
        flush_interval_s: float,
        idle_advance_s: float,
        flush_max_pending: int = 200,
        means: MeansLookup | None = None,
        retention_ms: int | None = None,
        observe_latency: Callable[[float], None] | None = None,
        reachable: Callable[[], bool] | None = None,
    ) -> None:
        self.plan = plan
        self.config = config
        self.outputs = outputs
        self.publisher = Publisher(plan, means) if means else Publisher(plan)
        self.evaluator = AlertEvaluator(plan, config.rolling_span_ms, config.rolling_slice_ms)
        self.flush_interval_s = flush_interval_s
        self.idle_advance_s = idle_advance_s
        self.flush_max_pending = flush_max_pending
        self.partitions: dict[int, PartitionRuntime] = {}
        self.published_records = 0
        self.alerts_published = 0
        # a window this far behind the watermark when it is dropped has its records
        # tombstoned (a replay of old history; live windows age out by the topics' retention)
        self.retention_ms = retention_ms
        self.observe_latency = observe_latency
        # whether the broker answers (the API's probe): while it does not, the partitions'
        # event-time clocks stand still (`_pause`, `_resume`)
        self.reachable = reachable or (lambda: True)
        self.paused_since_ms: int | None = None
        # the time `emit` held the event loop, in total: the fold cannot take envelopes
        # meanwhile, so that time is not silence of the input (`_silent_s`)
        self.busy_s = 0.0

    # -- inside the agent's iteration ---------------------------------------------------

    def on_envelope(
        self,
        partition: int,
        value: bytes,
        event: Ackable,
        load: Callable[[], Iterable[tuple[str, bytes]]],
        write: Callable[[str, bytes | None], None],
        backlog: bool = False,
        offset: int | None = None,
    ) -> list[Ackable]:
        """Fold one envelope (an empty one is a flush tick) read at `offset` of its
        partition. Returns the envelopes to acknowledge once the writes made by this call
        are confirmed (empty: no flush). `backlog`: more envelopes of this partition are
        waiting on the broker."""
        runtime = self._runtime(partition, load)
        now = time.monotonic()
        self._resume(_wall_ms())  # an envelope arrived: the input is readable again
        state = runtime.state
        replayed = offset is not None and offset <= state.envelope_offset
        if offset is not None and not replayed:
            state.envelope_offset = offset
        if value and replayed:  # already in this state: a re-delivery after a rebalance
            state.counts.replayed += len(read_envelope(value)[0])
        elif value:
            entries, behind, caught_up, group_behind, next_event_ms = read_envelope(value)
            state.apply(entries, _wall_ms(), behind, caught_up, group_behind, next_event_ms)
            runtime.last_envelope = runtime.last_idle_advance = now
            runtime.busy_at_envelope = self.busy_s
            runtime.backlog = backlog or bool(behind)
        runtime.tick_sent = False
        runtime.pending.append(event)
        # Catching up on a backlog, flushes are spaced out: each writes up to a rolling
        # window of slices per unit whatever the event time it covers, and a crash only
        # replays a few more seconds of envelopes.
        interval = self.flush_interval_s * (BACKLOG_FLUSH_FACTOR if runtime.backlog else 1)
        if (
            value
            and len(runtime.pending) < self.flush_max_pending
            and now - runtime.last_flush < interval
        ):
            return []
        # Alerts first: the machines step past the slices that left the rolling window, so
        # those slices are dropped before they are ever written (the catch-up case).
        state.evaluate_alerts(self.evaluator)
        expire_slices(state)
        for key, data in flush(state):
            write(key, data)
        flushed = runtime.pending
        runtime.pending = []
        runtime.last_flush = now
        return flushed

    def next_offset(
        self, partition: int, load: Callable[[], Iterable[tuple[str, bytes]]]
    ) -> int | None:
        """The envelope offset this partition's state expects next (None: any, the state
        holds no envelope yet). An envelope past it means envelopes were not delivered."""
        envelope_offset = self._runtime(partition, load).state.envelope_offset
        return envelope_offset + 1 if envelope_offset >= 0 else None

    def _runtime(
        self, partition: int, load: Callable[[], Iterable[tuple[str, bytes]]]
    ) -> PartitionRuntime:
        runtime = self.partitions.get(partition)
        if runtime is None:
            state = load_state(partition, self.config, load(), _wall_ms())
            runtime = self.partitions[partition] = PartitionRuntime(
                state, busy_at_envelope=self.busy_s
            )
            c = state.counts
            log.info(
                "partition %d loaded: %d units, %d windows, watermark %s, scored %d, "
                "duplicates %d, late %d, replayed %d",
                partition, len(state.units), len(state.windows), state.watermark_ms,
                c.scored, c.duplicates, c.late, c.replayed,
            )  # fmt: skip
            self.publisher.prime(state)
        return runtime

    def adopt(
        self, partitions: Iterable[int], load: Callable[[], Iterable[tuple[str, bytes]]]
    ) -> None:
        """Load the state of assigned partitions that no envelope has brought in yet."""
        for partition in partitions:
            if partition not in self.partitions:
                self._runtime(partition, load)

    def revoke(self, partitions: Iterable[int]) -> None:
        """Unflushed state of revoked partitions is dropped: the new owner replays it."""
        for partition in partitions:
            if self.partitions.pop(partition, None) is not None:
                self.publisher.forget_partition(partition)

    # -- on the emit timer ----------------------------------------------------------------

    def emit(self) -> Emitted:
        """Messages to publish now: changed/closing windows, the outboxes (alerts, late
        events, dead letters), flush ticks."""
        now = time.monotonic()
        now_ms = _wall_ms()
        emitted = Emitted()
        messages = emitted.messages
        progress: dict[int, int] = {}  # partitions whose watermark moved
        if self.reachable():
            self._resume(now_ms)
        elif self.paused_since_ms is None:
            self.paused_since_ms = now_ms
        for partition, runtime in self.partitions.items():
            state = runtime.state
            if self.paused_since_ms is not None:
                runtime.last_idle_advance = now  # an outage is not idleness
            else:
                state.clock.refresh(now_ms)
                if self._silent_s(runtime, now) >= self.idle_advance_s:
                    state.clock.advance_idle(int((now - runtime.last_idle_advance) * 1000))
                    runtime.last_idle_advance = now
            state.evaluate_alerts(self.evaluator)
            owed = state.outbox.take()
            if owed:
                messages.extend(self.outputs.outbox_message(kind, r) for _, kind, r in owed)
                emitted.outbox[partition] = (runtime, owed[-1][0])
                emitted.kinds.update((partition, kind) for _, kind, _ in owed)
                self.alerts_published += sum(kind == "alert" for _, kind, _ in owed)
            # Catching up on history (a backlog, event time well behind the clock), an open
            # window is superseded within seconds: closing windows go out at once, open ones
            # every CATCH_UP_PUBLISH_S; the backlog's end publishes everything at the next
            # emit. A live stream with a momentary backlog publishes at every emit.
            if self._silent_s(runtime, now) >= self.flush_interval_s:
                runtime.backlog = False  # nothing arrived for a while: no backlog left
            catching_up = _replaying(runtime, now_ms)
            open_windows = not catching_up or now - runtime.last_open_publish >= CATCH_UP_PUBLISH_S
            if open_windows:
                runtime.last_open_publish = now
            publication = self.publisher.publish(state, now_ms, open_windows=open_windows)
            _apply(state, publication)
            if self.observe_latency is not None:
                for seconds in publication.latencies_s:
                    self.observe_latency(seconds)
            messages.extend(
                self.outputs.score_message(r, stamp)
                for r, stamp in zip(publication.records, publication.stamps, strict=True)
            )
            messages.extend(
                self.outputs.programme_message(r, stamp) for r, stamp in publication.programmes
            )
            messages.extend(self.outputs.summary_message(s) for s in publication.summaries)
            self.published_records += len(publication.records)
            if state.watermark_ms is not None and state.watermark_ms != runtime.progress_sent:
                progress[partition] = state.watermark_ms
                runtime.progress_sent = state.watermark_ms
            watermark = state.watermark_ms or 0
            held = partial(self.publisher.reads_network, partition, now_ms=now_ms)
            for key in expire(state, held):
                published = self.publisher.forget(partition, key)
                if self.retention_ms is not None and (
                    state.window_end(key) + self.retention_ms < watermark
                ):
                    messages.extend(self.outputs.tombstones(published))
            unflushed = runtime.pending or any(w.unsaved for w in state.windows.values())
            if runtime.flush_wanted or (
                unflushed
                and not runtime.tick_sent
                and self._silent_s(runtime, now) >= self.flush_interval_s
            ):
                runtime.flush_wanted = False
                messages.append(self.outputs.tick_message(partition))
                runtime.tick_sent = True
        if progress:
            # after every partition's summaries, in one message: the network level may
            # close a window once every partition's watermark passed it
            messages.append(self.outputs.progress_message(progress))
        self.busy_s += time.monotonic() - now
        return emitted

    def _silent_s(self, runtime: PartitionRuntime, now: float) -> float:
        """How long the partition's input has been silent: since its last envelope, not
        counting the publication that held the loop meanwhile. A catch-up's publication
        can take longer than a flush interval; counted as silence, it ended the catch-up
        and every open window went out at each emit after it."""
        return now - runtime.last_envelope - (self.busy_s - runtime.busy_at_envelope)

    def _resume(self, now_ms: int) -> None:
        """The broker answers again: the time it did not is cut out of every partition's
        clock. Silence decides when a source is released and when an idle partition's
        watermark follows the wall clock; a broker outage during a replay is not silence,
        and counting it as such made the watermark jump past unread events (late)."""
        if self.paused_since_ms is None:
            return
        paused_ms = max(0, now_ms - self.paused_since_ms)
        self.paused_since_ms = None
        for runtime in self.partitions.values():
            runtime.state.clock.pause(paused_ms)

    def sent(self, emitted: Emitted) -> None:
        """The broker acknowledged every message of `emitted`: its outbox entries leave their
        partition's state (persisted by a flush asked for now). A partition revoked since
        is left alone: its new owner publishes them again."""
        for partition, (runtime, seq) in emitted.outbox.items():
            if self.partitions.get(partition) is runtime and runtime.state.outbox.confirm(seq):
                runtime.flush_wanted = True

    def unsent(self, emitted: Emitted) -> None:
        """Sending `emitted` failed: its outbox entries go out again at the next emit."""
        for partition, (runtime, seq) in emitted.outbox.items():
            if self.partitions.get(partition) is runtime:
                runtime.state.outbox.retry(seq)

    def acknowledge(
        self,
        partition: int,
        ack: dict[str, Any],
        event: Ackable,
        now_ms: int,
        load: Callable[[], Iterable[tuple[str, bytes]]],
    ) -> None:
        """Apply an acknowledgement routed to this partition (the ack topic is partitioned
        like the envelopes, so the worker holding one holds the other). The record goes to
        the outbox, and `event` is acknowledged with the flush that persists the change:
        an acknowledgement is never committed before the state that holds it."""
        runtime = self._runtime(partition, load)
        index = self.evaluator.index_of(ack["service"], ack.get("touchpoint"))
        if index is not None:
            runtime.state.acknowledge(self.evaluator, ack["unit"], index, ack["by"], now_ms)
        if ack.get("rule") == programme_alerts.RULE:
            runtime.state.acknowledge_programme(
                self.evaluator, ack["unit"], ack["alert_id"], ack["by"]
            )
        runtime.pending.append(event)
        runtime.flush_wanted = True

    def catching_up(self) -> bool:
        """Some partition is replaying history: envelopes arriving with more waiting on the
        broker, and its event time well behind the clock. Publication then competes with
        the fold for the CPU. A live stream, where some records are always left to read
        after a batch, is not catching up."""
        now, now_ms = time.monotonic(), _wall_ms()
        return any(
            self._silent_s(runtime, now) < self.flush_interval_s and _replaying(runtime, now_ms)
            for runtime in self.partitions.values()
        )

    def counts(self) -> Counts:
        total = Counts()
        for runtime in self.partitions.values():
            c = runtime.state.counts
            total.scored += c.scored
            total.duplicates += c.duplicates
            total.late += c.late
            total.replayed += c.replayed
            total.unit_cap += c.unit_cap
        return total


__all__ = ["ScoringService", "record_topic_key"]
