"""The Faust app's wiring without a broker: what its rebalance handlers do to shared state."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.types import TP

from streams.scoring.network import NetworkState
from streams.settings import load_settings
from streams.worker.app import create_app
from streams.worker.kafka_compat import fetched_not_taken


def _revoke(app: Any, revoked: set[TP]) -> None:
    asyncio.run(app.on_partitions_revoked.send(revoked))


def test_losing_the_network_partition_drops_the_network_state_for_a_rebuild() -> None:
    app = create_app(load_settings(store="memory"), "127.0.0.1:1")
    runtime = app.cemi
    runtime.network = NetworkState(runtime.plan, 0)
    _revoke(app, {TP(runtime.topics.envelopes, 0)})
    assert runtime.network is not None  # an envelope partition says nothing about it
    _revoke(app, {TP(runtime.topics.unit_scores, 0)})
    assert runtime.network is None


def test_fetched_not_taken_counts_what_the_channels_iterating_a_topic_hold() -> None:
    app = create_app(load_settings(store="memory"), "127.0.0.1:1")
    topic = app.topic("envelopes-like", key_serializer="raw", value_serializer="raw")
    assert fetched_not_taken(topic) == 0
    iterating = topic.clone(is_iterator=True)  # what an agent's stream reads from
    for message in ("first", "second"):
        iterating.queue.put_nowait(message)
    assert fetched_not_taken(topic) == 2
    iterating.queue.get_nowait()
    assert fetched_not_taken(topic) == 1
