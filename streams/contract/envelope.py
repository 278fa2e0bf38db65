"""Envelopes: one internal message per envelope partition per ingest batch, carrying each
event's unit, KPI contributions, id, time and source coordinates, in merge order.

The ingest stage decodes and validates events and computes their contributions (stateless
work); the scoring agent folds envelopes into state (stateful work). Envelopes turn hundreds
of events into one Kafka message, so Faust's per-message cost is paid per batch.

Wire form (orjson): `{"e": [entry, ...], "b": [source, ...]}` with each entry
`[unit, source, offset, event_id, event_time, ingest_ms, type, service, payload]` where
`source` is `"topic#partition"` and `payload` is the contributions, flat:
`[kpi, a, b, kpi, a, b, ...]` (a small list per contribution would make parsing an envelope
twice as slow), for `subscriber_base` the active subscriber count, for `programme_update`
`[programme, indicator, value]`; `b` lists the sending ingest's sources that
still had records to read when the batch was taken (a backlog: see the fold's watermark), `k`
its other sources, `g` the group's other sources with records nobody committed, and `n`, for
the sources of `b` whose next record the ingest already holds, that record's event time.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from functools import partial
from itertools import chain
from typing import Any, NamedTuple

import orjson

from streams.core.accumulators import Contribution

# An entry as decoded: a list of Entry's fields in their order (the fold unpacks it; an
# Entry object per event cost more than the unpacking)
Row = Sequence[Any]


class Entry(NamedTuple):
    unit: str
    source: str
    offset: int
    event_id: str
    event_time: int
    ingest_ms: int
    type: str
    service: str
    payload: Any  # [kpi, a, b, ...] contributions, or int subscribers for subscriber_base


def source_key(topic: str, partition: int) -> str:
    return f"{topic}#{partition}"


def entry_for(
    event: dict[str, Any],
    contributions: list[Contribution],
    topic: str,
    partition: int,
    offset: int,
    ingest_ms: int,
) -> list[Any]:
    etype = event["type"]
    if etype == "subscriber_base":
        payload: Any = event["active_subscribers"]
    elif etype == "programme_update":
        payload = [event["programme"], event["indicator"], event["value"]]
    else:
        payload = list(chain.from_iterable(contributions))
    return [
        event["unit"],
        source_key(topic, partition),
        offset,
        event["event_id"],
        event["event_time"],
        ingest_ms,
        etype,
        event.get("service"),  # none for a programme update
        payload,
    ]


def partition_for(unit: str, partitions: int) -> int:
    """The envelope partition of a unit: stable across processes and restarts."""
    return zlib.crc32(unit.encode()) % partitions


class EnvelopeContent(NamedTuple):
    """An envelope as read: its entries as rows and what its ingest knew of its sources."""

    entries: list[Row]
    behind: list[str]  # the sending ingest's sources with records left to read
    caught_up: list[str]  # its other sources
    group_behind: list[str]  # the group's other sources with records nobody committed
    next_event_ms: dict[str, int]  # for sources of `behind`: their next record's event time


def encode_envelope(
    entries: list[list[Any]],
    behind: list[str] | None = None,
    caught_up: list[str] | None = None,
    group_behind: list[str] | None = None,
    next_event_ms: dict[str, int] | None = None,
) -> bytes:
    return orjson.dumps(
        {
            "e": entries,
            "b": behind or [],
            "k": caught_up or [],
            "g": group_behind or [],
            "n": next_event_ms or {},
        }
    )


def read_envelope(value: bytes) -> EnvelopeContent:
    data = orjson.loads(value)
    return EnvelopeContent(
        data["e"], data.get("b", []), data.get("k", []), data.get("g", []), data.get("n", {})
    )


# an Entry from a decoded row without a Python frame per row (Entry(*row) runs one)
_new_entry = partial(tuple.__new__, Entry)


def decode_envelope(value: bytes) -> list[Entry]:
    return list(map(_new_entry, read_envelope(value)[0]))
