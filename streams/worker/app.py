"""The Faust app, built by `create_app(settings, bootstrap)`: thin agents over the services.

- ingest (its own aiokafka consumer, in a child process by default, else a Faust service):
  input topics -> envelopes + DLQ
- `score` agent: envelopes -> partition state (changelog-backed table), deferred acks
- emit task: coalesced publication of changed/closing windows, outboxes, flush ticks
- `network` agent: the unit summaries of every partition -> network scores and standings

What each does with an event or tick is in `streams.worker.agents`; this module wires it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
import orjson
from mode import Service

from streams.core.catalog import load_catalog
from streams.core.plan import ScoringPlan
from streams.http.metrics import LatencyHistogram
from streams.http.server import register_api
from streams.ingest.process import IngestProcess
from streams.ingest.stage import Ingest
from streams.kafka_security import client_kwargs, faust_credentials
from streams.scoring.keys import control_key
from streams.scoring.persistence import resume_position
from streams.scoring.publish import NetworkView
from streams.scoring.service import EmitPace, ScoringService
from streams.scoring.state import FoldConfig
from streams.sending import BatchSender, batch_producer
from streams.settings import Settings
from streams.tools.tail import follow_json
from streams.topics import Topics
from streams.wire.messages import OutputMessages
from streams.wire.outputs import OutputCodec
from streams.wire.schemas import SchemaStore
from streams.worker import faults
from streams.worker.agents import Emitter, EnvelopeFold, NetworkFold
from streams.worker.kafka_compat import faust_broker_url, register_transport, tables_recovered
from streams.worker.resync import Resync
from streams.worker.runtime import Runtime
from streams.worker.tables import ConfirmingTable

log = logging.getLogger(__name__)
REVOKE_CONFIRM_TIMEOUT_S = 10.0  # changelog sends normally confirm in milliseconds
NETWORK_PUBLISH_S = 0.2  # how soon the network level publishes what the units sent
STREAM_BUFFER_MESSAGES = 64  # per channel: tens of thousands of events already fetched
# The network agent's summaries (~15 KB each, hundreds per catch-up publication): a full
# channel holds back the delivery of everything fetched behind it
SUMMARY_BUFFER_MESSAGES = 1024


def fold_config(settings: Settings, plan: ScoringPlan) -> FoldConfig:
    """The fold's configuration from the settings and the catalog's time zone."""
    return FoldConfig(
        timezone=plan.catalog.timezone,
        allowed_lateness_ms=settings.allowed_lateness_ms,
        rolling_span_ms=settings.rolling_span_ms,
        rolling_slice_ms=settings.rolling_slice_ms,
        source_idle_ms=settings.idle_advance_ms,
        max_units=settings.max_units_per_partition,
    )


def create_app(settings: Settings, bootstrap: str, catalog_plan: ScoringPlan | None = None) -> Any:
    """A Faust app for one worker process. Nothing runs until a worker starts it."""
    register_transport()
    faults.arm(settings.fault_at, settings.fault_pause_ms)
    plan = catalog_plan or ScoringPlan(load_catalog(settings.catalog))
    topics = Topics(settings)
    store = SchemaStore()
    config = fold_config(settings, plan)
    outputs = OutputMessages(topics, OutputCodec(store, settings.output_format))
    latency = LatencyHistogram()
    views: dict[tuple[str, int], NetworkView] = {}
    runtime = Runtime(
        latency=latency,
        outputs=outputs,
        views=views,
        settings=settings,
        bootstrap=bootstrap,
        plan=plan,
        topics=topics,
        store=store,
        scoring=ScoringService(
            plan,
            config,
            outputs,
            flush_interval_s=settings.emit_interval_ms / 1000,
            idle_advance_s=settings.idle_advance_ms / 1000,
            means=lambda kind, start: views.get((kind, start)),
            retention_ms=settings.output_retention_ms,
            observe_latency=latency.observe,
            reachable=lambda: runtime.broker_reachable,
        ),
    )
    app = faust.App(
        settings.app_id,
        broker=faust_broker_url(bootstrap, settings.workarounds),
        broker_credentials=faust_credentials(settings),
        store=settings.store_url,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=0,
        broker_session_timeout=6,
        # changelog values are bounded (seen-id chunks, per-unit control) but can pass 1 MB
        # with hundreds of units: Faust's default request limit is 1,000,000 bytes
        producer_max_request_size=8 * 1024 * 1024,
        broker_rebalance_timeout=6,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        # Our messages are envelopes of up to 2,000 events: Faust's default buffer of 4,096
        # messages per channel let a worker hold most of a backlog in memory (the ingest runs
        # far ahead of the fold), so RSS grew with the backlog instead of the windows.
        stream_buffer_maxsize=STREAM_BUFFER_MESSAGES,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_tables_enabled=False,
        web_router_enabled=False,
        autodiscover=False,
        stream_wait_empty=False,
    )
    app.cemi = runtime  # type: ignore[attr-defined]  # for routes and tests

    def raw_topic(name: str, partitions: int, maxsize: int | None = None) -> Any:
        # bytes in, bytes out: decoding is ours, so a bad message never crashes an agent
        return app.topic(
            name,
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
            internal=False,
            maxsize=maxsize,
        )

    envelopes_name = topics.envelopes
    envelopes = raw_topic(envelopes_name, settings.partitions)
    app.conf.Table = ConfirmingTable  # type: ignore[assignment]
    state: ConfirmingTable = app.Table(  # type: ignore[assignment]
        "state",
        partitions=settings.partitions,
        schema=faust.Schema(
            key_type=str, value_type=bytes, key_serializer="json", value_serializer="raw"
        ),
    )

    recovered = [False]  # the table holds its assigned partitions' changelogs

    @state.on_recover  # type: ignore[misc]
    async def state_recovered() -> None:
        recovered[0] = True

    def resume_positions(tps: set[Any]) -> dict[Any, int]:
        # Called by the transport whenever Faust seeks to the committed offsets: after each
        # recovery (before the streams resume), and also during a rebalance, before the
        # table is recovered (then the committed offsets stand; the recovery seeks again).
        if not recovered[0]:
            return {}
        return {
            tp: resume_position(state.get(control_key(tp.partition)))
            for tp in tps
            if tp.topic == envelopes_name
        }

    app.resume_positions = resume_positions  # type: ignore[attr-defined]

    unit_scores_name = topics.unit_scores
    unit_scores = raw_topic(unit_scores_name, 1, SUMMARY_BUFFER_MESSAGES)
    network_table: ConfirmingTable = app.Table(  # type: ignore[assignment]
        "network",
        partitions=1,
        schema=faust.Schema(
            key_type=str, value_type=bytes, key_serializer="json", value_serializer="raw"
        ),
    )

    network_fold = NetworkFold(runtime, network_table, settings.allowed_lateness_ms)

    @app.agent(unit_scores, name="network")
    async def network(stream: Any) -> None:
        async for event in stream.noack().events():
            network_fold.on_event(event)

    @app.timer(0.2)
    async def confirm_network() -> None:
        await network_fold.confirm()

    resync = Resync(lambda: app.consumer, lambda: tables_recovered(app))

    @app.timer(0.25)
    async def seek_back() -> None:
        await resync.seek_back(time.monotonic())

    envelope_fold = EnvelopeFold(app, runtime, state, envelopes, resync)

    @app.agent(envelopes, name="score")
    async def score(stream: Any) -> None:
        async for event in stream.noack().events():
            await envelope_fold.on_event(event)

    acks = raw_topic(topics.acks, settings.partitions)

    @app.agent(acks, name="acknowledge")
    async def acknowledge(stream: Any) -> None:
        # Acks are routed to the unit's partition, which this worker owns with its envelopes.
        # Each is acknowledged (committed) by the flush that persists its effect.
        async for event in stream.noack().events():
            ack = orjson.loads(event.value)
            now_ms = int(time.time() * 1000)
            runtime.scoring.acknowledge(
                event.message.partition, ack, event, now_ms, envelope_fold.load
            )
            faults.kill_later("ack:applied")

    emit_interval_s = settings.emit_interval_ms / 1000
    # ticks finer than the interval: the end of a catch-up is published within a tick
    emit_tick_s = emit_interval_s / 4
    pace = EmitPace(emit_interval_s, emit_tick_s)
    emitter = Emitter(app, runtime, envelope_fold, network_fold, pace, emit_tick_s)

    @app.task
    async def emit_ticks() -> None:
        await emitter.run()

    @app.timer(NETWORK_PUBLISH_S)
    async def emit_network() -> None:
        await emitter.emit_network()

    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        # Faust's recovery of the partitions it assigns next reads each changelog up to its
        # end as of now, over the table's current data: a table write still on its way would
        # land after that end, and the recovery would put the key's older value back (a
        # control value older than its windows, or windows missing events whose envelopes are
        # already committed). So every write made so far is confirmed first.
        try:
            await asyncio.wait_for(
                asyncio.gather(state.confirm_sent(), network_table.confirm_sent()),
                timeout=REVOKE_CONFIRM_TIMEOUT_S,
            )
        except TimeoutError:
            log.error("table writes unconfirmed at a rebalance: recovery may load older values")
        recovered[0] = False
        resync.clear()  # the recovery seeks every partition to where its state resumes
        runtime.scoring.revoke(tp.partition for tp in revoked if tp.topic == topics.envelopes)
        if any(tp.topic == topics.unit_scores for tp in revoked):
            # Another worker folds the network level until it comes back here; then it is
            # rebuilt from the recovered table, which holds what that worker folded meanwhile.
            runtime.network = None

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]

    @app.service
    class IngestService(Service):  # type: ignore[misc]
        async def on_start(self) -> None:
            state_producer = batch_producer(settings, bootstrap)
            await state_producer.start()
            runtime.state_producer = state_producer
            runtime.state_sender = BatchSender(state_producer)
            producer = batch_producer(settings, bootstrap)
            await producer.start()
            # published only once started (both senders): the emit timer, acks and routes
            # test for it (an emit during the start crashed the worker once: no sender yet)
            runtime.sender = BatchSender(producer)
            runtime.producer = producer
            runtime.ingest = (
                IngestProcess(settings, bootstrap, runtime.loglevel)
                if settings.ingest_process
                else Ingest(settings, plan, store, bootstrap, producer)
            )

        async def on_stop(self) -> None:
            if runtime.ingest is not None:
                runtime.ingest.stop()
                await runtime.ingest.stopped()
            for producer in (runtime.producer, runtime.state_producer):
                if producer is not None:
                    await producer.stop()

        @Service.task
        async def _consume(self) -> None:
            assert runtime.ingest is not None
            await runtime.ingest.run()

        @Service.task
        async def _follow_network(self) -> None:
            # every worker keeps the latest network view per window, for delta_network
            async for _, view in follow_json(
                bootstrap, topics.network_means, security=client_kwargs(settings)
            ):
                views[(view["window"], view["start"])] = (
                    view["network"],
                    {tuple(m[:4]): m[4] for m in view["means"]},
                )

    register_api(app, runtime)
    return app
