"""Topic names (one place) and their creation on the broker."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Final

from streams.core.events import EVENT_TYPES
from streams.settings import Settings

# event type -> input topic suffix
INPUT: Final = {
    "order": "touchpoint.orders",
    "install": "touchpoint.installs",
    "ticket": "touchpoint.tickets",
    "payment": "touchpoint.payments",
    "cancellation": "touchpoint.cancellations",
    "survey": "touchpoint.surveys",
    "subscriber_base": "touchpoint.subscriber-base",
    "programme_update": "programme.updates",
}
assert set(INPUT) == set(EVENT_TYPES)
OUTPUT: Final = {
    "kpi": "cemi.kpi",
    "scores": "cemi.scores",
    "alerts": "cemi.alerts",
    "deadletter": "deadletter",
    "late": "late",
    "standings": "cemi.standings",
    "programmes": "cemi.programmes",
}
COMPACTED: Final = frozenset({"kpi", "scores", "alerts", "standings", "programmes"})
ENVELOPES: Final = "internal.envelopes"
UNIT_SCORES: Final = "internal.unit-scores"  # one partition: the network level in one place
NETWORK_MEANS: Final = "internal.network-means"  # the network view every worker follows
ACKS: Final = "cemi.acks"  # alert acknowledgements, keyed and partitioned like the envelopes


@dataclass(frozen=True)
class Topics:
    settings: Settings

    def input(self, etype: str) -> str:
        return self.settings.topic(INPUT[etype])

    @property
    def inputs(self) -> list[str]:
        return [self.settings.topic(name) for name in INPUT.values()]

    def output(self, name: str) -> str:
        return self.settings.topic(OUTPUT[name])

    @property
    def envelopes(self) -> str:
        return self.settings.topic(ENVELOPES)

    @property
    def network_means(self) -> str:
        return self.settings.topic(NETWORK_MEANS)

    @property
    def acks(self) -> str:
        return self.settings.topic(ACKS)

    @property
    def unit_scores(self) -> str:
        return self.settings.topic(UNIT_SCORES)

    def all(self) -> dict[str, tuple[int, dict[str, str]]]:
        """Every topic the scorer reads or writes: (partitions, configs)."""
        partitions = self.settings.partitions
        topics: dict[str, tuple[int, dict[str, str]]] = {n: (partitions, {}) for n in self.inputs}
        # the latest value per key, and nothing older than the retention (score records are
        # stamped with their window's start, so that counts in windows)
        retained = {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(self.settings.output_retention_ms),
        }
        for key, suffix in OUTPUT.items():
            config = dict(retained) if key in COMPACTED else {}
            topics[self.settings.topic(suffix)] = (partitions, config)
        topics[self.envelopes] = (partitions, {})
        topics[self.unit_scores] = (1, {})
        topics[self.acks] = (partitions, {})
        topics[self.network_means] = (1, {"cleanup.policy": "compact"})
        return topics


async def create_topics(settings: Settings, bootstrap: str) -> None:
    """Create every topic with the configured partitions (existing ones are left alone)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    from streams.kafka_security import client_kwargs

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, count, settings.replication_factor, topic_configs=config)
            for name, (count, config) in Topics(settings).all().items()
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
            await asyncio.sleep(0.2)  # let the broker's metadata settle
    finally:
        await admin.close()
