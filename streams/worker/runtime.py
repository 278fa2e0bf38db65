"""What a worker's agents, timers and routes share (one per worker process)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.contract.messages import Message
from streams.core.plan import ScoringPlan
from streams.http.metrics import LatencyHistogram
from streams.ingest.process import IngestProcess
from streams.ingest.stage import Ingest
from streams.scoring.network import NetworkState
from streams.scoring.publish import NetworkView
from streams.scoring.service import ScoringService
from streams.sending import BatchSender
from streams.settings import Settings
from streams.topics import Topics
from streams.wire.messages import OutputMessages
from streams.wire.schemas import SchemaStore


@dataclass
class Runtime:
    """What the app's agents, timers and routes share (one per worker process)."""

    settings: Settings
    bootstrap: str
    plan: ScoringPlan
    topics: Topics
    store: SchemaStore
    scoring: ScoringService
    outputs: OutputMessages
    views: dict[tuple[str, int], NetworkView]
    latency: LatencyHistogram  # event ingest to score publication
    producer: AIOKafkaProducer | None = None
    sender: BatchSender | None = None
    # The state changelog's own producer: a flush (which the fold waits for) must not
    # queue behind an emit's tens of thousands of output records (it did, for seconds).
    state_producer: AIOKafkaProducer | None = None
    state_sender: BatchSender | None = None
    ingest: Ingest | IngestProcess | None = None
    network: NetworkState | None = None
    loglevel: str = "warning"  # the worker's, for the ingest child (set by run_worker)
    broker_reachable: bool = True  # the API's probe's latest answer

    async def send(self, messages: list[Message]) -> None:
        assert self.sender is not None
        await self.sender.send(messages)

    def dead_lettered(self) -> dict[str, int]:
        """Dead-lettered input by reason: the ingest's refusals and the fold's (unit cap)."""
        reasons = Counter(self.ingest.stats.dead_lettered if self.ingest else {})
        reasons["unit_cap"] += self.scoring.counts().unit_cap
        return {reason: count for reason, count in reasons.items() if count}

    def stats(self) -> dict[str, Any]:
        """The pipeline's counts (`/api/v1/stats`)."""
        counts = self.scoring.counts()
        ingest = self.ingest.stats if self.ingest else None
        return {
            "consumed": ingest.consumed if ingest else 0,
            "dead_lettered": self.dead_lettered(),
            "scored": counts.scored,
            "duplicates": counts.duplicates,
            "late": counts.late,
            "replayed": counts.replayed,
            "published_records": self.scoring.published_records,
            "partitions": sorted(self.scoring.partitions),
        }
