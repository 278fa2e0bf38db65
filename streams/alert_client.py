"""Reading current alerts from the alerts topic and sending acknowledgements (CLI, API)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.contract.envelope import partition_for
from streams.kafka_security import client_kwargs
from streams.settings import Settings
from streams.tools.tail import latest_by_key
from streams.topics import Topics
from streams.wire.outputs import reader_codec


async def current_alerts(
    settings: Settings, bootstrap: str, *, include_resolved: bool = False
) -> list[dict[str, Any]]:
    """The latest record of every alert (firing or acknowledged; resolved on request)."""
    latest = await latest_by_key(
        bootstrap,
        Topics(settings).output("alerts"),
        idle_exit_s=1.5,
        security=client_kwargs(settings),
        codec=reader_codec(settings.schema_registry_url),
    )
    alerts = [a for a in latest.values() if "alert_id" in a]
    if not include_resolved:
        alerts = [a for a in alerts if a["state"] != "resolved"]
    return sorted(alerts, key=lambda a: (a["unit"], a["service"], a["touchpoint"] or ""))


class UnknownAlert(LookupError):
    pass


def ack_record(alert: dict[str, Any], by: str) -> dict[str, Any]:
    """The acknowledgement of `alert` (what `cemi ack` and the HTTP route send)."""
    return {
        "alert_id": alert["alert_id"],
        "unit": alert["unit"],
        "service": alert["service"],
        "touchpoint": alert["touchpoint"],
        "rule": alert.get("rule"),
        "by": by,
        "at_ms": int(time.time() * 1000),
    }


async def send_ack_record(producer: AIOKafkaProducer, topic: str, ack: dict[str, Any]) -> None:
    """To the ack topic's partition of the alert's unit: the worker holding that unit."""
    partitions = await producer.partitions_for(topic)
    partition = partition_for(ack["unit"], len(partitions))
    await producer.send_and_wait(
        topic, orjson.dumps(ack), key=ack["alert_id"].encode(), partition=partition
    )


async def send_ack(settings: Settings, bootstrap: str, alert_id: str, by: str) -> dict[str, Any]:
    """Route an acknowledgement to the partition that owns the alert's unit."""
    alerts = {a["alert_id"]: a for a in await current_alerts(settings, bootstrap)}
    alert = alerts.get(alert_id)
    if alert is None:
        raise UnknownAlert(f"no current alert {alert_id!r}")
    ack = ack_record(alert, by)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **client_kwargs(settings))
    await producer.start()
    try:
        await send_ack_record(producer, Topics(settings).acks, ack)
    finally:
        await producer.stop()
    return ack
