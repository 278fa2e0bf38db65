"""GroupBacklog: the ingest group's unread input partitions, whoever owns them."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.broker import EmbeddedBroker
from streams.contract.envelope import source_key
from streams.ingest.stage import GroupBacklog

pytestmark = pytest.mark.broker


def test_every_partition_with_records_the_group_has_not_committed_is_behind(
    broker: EmbeddedBroker,
) -> None:
    topic = f"backlog-{uuid.uuid4().hex[:8]}"
    group = f"{topic}-ingest"

    async def scenario() -> tuple[set[str], set[str], set[str]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.url)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=broker.url)
        await producer.start()
        try:
            for partition in (0, 1):  # partition 2 stays empty
                for i in range(5):
                    await producer.send_and_wait(topic, b"x%d" % i, partition=partition)
        finally:
            await producer.stop()
        # commits made by another consumer of the group: the view is the group's
        committer = AIOKafkaConsumer(
            bootstrap_servers=broker.url, group_id=group, enable_auto_commit=False
        )
        await committer.start()
        committer.assign([TopicPartition(topic, p) for p in range(3)])
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.url, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        consumer.assign([TopicPartition(topic, 2)])  # owns only the empty partition
        try:
            backlog = GroupBacklog(consumer, [topic], workarounds=True)
            assert not backlog.ready  # nothing may be sent before the view was read
            await backlog.refresh(force=True)
            assert backlog.ready
            before = set(backlog.behind)
            backlog.assigned()  # a rebalance: read again at once, not after the interval
            assert not backlog.ready
            await backlog.refresh()
            assert backlog.ready
            await committer.commit({TopicPartition(topic, 0): 5})  # partition 0 read to its end
            await backlog.refresh(force=True)
            after_one = set(backlog.behind)
            await committer.commit({TopicPartition(topic, 1): 3})  # partition 1 partly
            await backlog.refresh(force=True)
            return before, after_one, set(backlog.behind)
        finally:
            await consumer.stop()
            await committer.stop()

    before, after_one, after_two = asyncio.run(scenario())
    first, second = source_key(topic, 0), source_key(topic, 1)
    assert before == {first, second}
    assert after_one == {second}
    assert after_two == {second}
