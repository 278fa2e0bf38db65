"""Settings: the broker URL forms users write, and what switches the broker work-arounds."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.settings import SettingsError, load_settings
from streams.worker import kafka_compat


@pytest.fixture
def no_workaround_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CEMI_BROKER_WORKAROUNDS", raising=False)


@pytest.mark.parametrize(
    ("given", "bootstrap"),
    [
        ("k1:9092", "k1:9092"),
        ("k1:9092,k2:9093", "k1:9092,k2:9093"),
        ("kafka://k1:9092", "k1:9092"),
        ("kafka://k1:9092;k2:9093", "k1:9092,k2:9093"),
        ("kafka://k1:9092;kafka://k2:9093", "k1:9092,k2:9093"),
        (" 127.0.0.1:1234 ", "127.0.0.1:1234"),
    ],
)
def test_broker_url_accepts_the_faust_and_the_kafka_forms(given: str, bootstrap: str) -> None:
    assert load_settings(broker_url=given).broker_url == bootstrap


@pytest.mark.parametrize(
    "given", ["http://k1:9092", "k1", "k1:99999", "k1:90 92", "k1:9092,", "kafka://k1:1;x://k2:2"]
)
def test_a_broker_url_that_is_not_host_port_is_refused_naming_the_variable(given: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(broker_url=given)
    assert error.value.problems[0][0] == "CEMI_BROKER_URL"


def test_faust_gets_one_url_per_server() -> None:
    assert kafka_compat.faust_broker_url("k1:1,k2:2", False) == "cemi://k1:1;cemi://k2:2"
    assert kafka_compat.faust_broker_url("k1:1", True) == "cemi-embedded://k1:1"


def test_workarounds_are_on_for_the_embedded_broker_and_off_for_a_url_by_default(
    no_workaround_env: None,
) -> None:
    assert load_settings().workarounds is True
    assert load_settings(broker_url="k1:9092").workarounds is False
    assert load_settings(broker_url="k1:9092", broker_workarounds=True).workarounds is True


def test_against_a_url_faust_keeps_its_own_end_offsets_and_fetch_wait(
    no_workaround_env: None,
) -> None:
    # 1. (recovery target from the fetch high watermark) and 3. (0.1 s fetch wait) live in
    # the embedded transport's consumer thread only
    settings = load_settings(broker_url="k1:9092")
    url = kafka_compat.faust_broker_url(settings.broker_url or "", settings.workarounds)
    assert url.startswith("cemi://")
    thread = kafka_compat.Transport.Consumer._new_consumer_thread
    assert thread is faust_aiokafka.Consumer._new_consumer_thread
    embedded = kafka_compat.EmbeddedTransport.Consumer._new_consumer_thread
    assert embedded is not faust_aiokafka.Consumer._new_consumer_thread


class FakeConsumer:
    def __init__(self) -> None:
        self.asked: list[Any] = []
        original = self._leave
        self._coordinator = SimpleNamespace(_maybe_leave_group=original)

    async def _leave(self) -> None:
        pass

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.asked.append(("list_offsets", tps))
        return {tp: 5 for tp in tps}


def test_against_a_url_end_offsets_are_listoffsets_and_leave_group_is_aiokafkas() -> None:
    consumer: Any = FakeConsumer()
    tp = TopicPartition("t", 0)
    # 1.: no high-watermark fetch (the fake has no client: a fetch would raise)
    assert asyncio.run(kafka_compat.end_offsets(consumer, [tp], False)) == {tp: 5}
    # 2.: the coordinator's LeaveGroup is left alone
    before = consumer._coordinator._maybe_leave_group
    kafka_compat.adapt_consumer(consumer, False)
    assert consumer._coordinator._maybe_leave_group is before
    kafka_compat.adapt_consumer(consumer, True)
    assert consumer._coordinator._maybe_leave_group is not before
