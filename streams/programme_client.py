"""Reporting a programme indicator's value without a producer of one's own: the event that
`cemi programme report` and `POST /api/v1/programmes/{id}/updates` send, built and checked in
one place (the same checks the ingest applies), then sent to the input topic as JSON."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.core.events import validate_event
from streams.core.programmes import ProgrammeDef, check_update
from streams.topics import Topics


def programme_update(
    programmes: Mapping[str, ProgrammeDef],
    *,
    unit: Any,
    programme: Any,
    indicator: Any,
    value: Any,
    event_time_ms: Any = None,
) -> dict[str, Any]:
    """A valid programme_update event; InvalidEvent (with its reason) otherwise."""
    event = validate_event(
        {
            "type": "programme_update",
            "event_id": f"report-{uuid.uuid4().hex}",
            "event_time": int(time.time() * 1000) if event_time_ms is None else event_time_ms,
            "unit": unit,
            "programme": programme,
            "indicator": indicator,
            "value": value,
        }
    )
    check_update(programmes, event)
    return event


async def send_update(producer: AIOKafkaProducer, topics: Topics, event: dict[str, Any]) -> None:
    """To the programme updates' input topic, keyed by unit."""
    await producer.send_and_wait(
        topics.input("programme_update"), orjson.dumps(event), key=event["unit"].encode()
    )
