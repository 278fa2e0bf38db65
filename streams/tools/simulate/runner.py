"""Running the generator: live (event time = wall clock, paced) or historic (as fast as possible),
to the input topics or to a JSON-lines file. Used by `cemi simulate` and `cemi demo`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any, Final, Protocol, cast

import orjson

from streams.settings import Settings
from streams.tools.produce import EventProducer, WireFormat
from streams.tools.simulate.generator import DAY_MS, SCENARIOS, Generator, Incident

DEFAULT_COUNT: Final = 100_000
HISTORIC_SPAN_MS: Final = 2 * DAY_MS
LIVE_INCIDENT_DELAY_MS: Final = 20_000
LIVE_INCIDENT_MS: Final = 900_000  # longer than the default 5-minute alert hold
# "Forever" in live mode: a lazily generated stream this long in event time.
FOREVER_S: Final = 10 * 365 * 86_400
WIRES: Final = ("avro", "json", "mixed")
MIN_SLEEP_S: Final = 0.02


class Sink(Protocol):
    """Where events go: the input topics or a file."""

    async def __aenter__(self) -> Sink: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def send(self, event: dict[str, Any]) -> None: ...

    async def send_all(self, events: Iterable[dict[str, Any]]) -> int: ...


class FileSink:
    """JSON lines, one event a line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sent = 0
        self._file: Any = None

    async def __aenter__(self) -> FileSink:
        self._file = self.path.open("wb")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._file.close()

    async def send(self, event: dict[str, Any]) -> None:
        self._file.write(orjson.dumps(event) + b"\n")
        self.sent += 1

    async def send_all(self, events: Iterable[dict[str, Any]]) -> int:
        for event in events:
            self._file.write(orjson.dumps(event) + b"\n")
            self.sent += 1
        return self.sent


def incidents_for(
    scenarios: tuple[str, ...], units: tuple[str, ...], start_ms: int, end_ms: int
) -> tuple[Incident, ...]:
    """One incident per scenario during [start_ms, end_ms); scenario i hits units[i % n]
    (install_backlog the first unit, payment_gateway the second, complaint_surge the third)."""
    unknown = [name for name in scenarios if name not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    return tuple(
        Incident(name, units[SCENARIOS.index(name) % len(units)], start_ms, end_ms)
        for name in dict.fromkeys(scenarios)
    )


def _check(units: tuple[str, ...], rate: float | None, count: int | None, wire: str) -> None:
    if not units:
        raise ValueError("units: at least one unit is needed")
    if rate is not None and rate <= 0:
        raise ValueError(f"rate: must be positive, got {rate}")
    if count is not None and count < 0:
        raise ValueError(f"count: must not be negative, got {count}")
    if wire not in WIRES:
        raise ValueError(f"wire: must be one of {', '.join(WIRES)}, got {wire!r}")


def _open_sink(settings: Settings, bootstrap: str | None, wire: str, out: Path | None) -> Sink:
    if out is not None:
        return FileSink(out)
    if not bootstrap:
        raise ValueError("a broker URL is needed to produce to Kafka (or give an output file)")
    return EventProducer(settings, bootstrap, cast(WireFormat, wire))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def live_events(
    units: tuple[str, ...],
    rate: float,
    total: int,
    seed: int,
    scenarios: tuple[str, ...],
    start_ms: int,
) -> Iterator[dict[str, Any]]:
    """`total` events `1/rate` s apart in event time from start_ms (generated lazily).

    Event ids carry start_ms too, so that two live runs with the same seed (each starting
    at "now") are not taken for duplicates of each other.
    """
    span_ms = max(1, round(total * 1000 / rate))
    incident_start = start_ms + LIVE_INCIDENT_DELAY_MS
    incidents = incidents_for(scenarios, units, incident_start, incident_start + LIVE_INCIDENT_MS)
    generator = Generator(
        units=units, start_ms=start_ms, span_ms=span_ms, seed=seed, incidents=incidents
    )
    prefix = f"{seed}-"
    for event in generator.events(total):
        if event["type"] != "subscriber_base":  # snapshot ids already carry their time
            sequence = event["event_id"].removeprefix(prefix)
            event = {**event, "event_id": f"{seed}-{start_ms}-{sequence}"}
        yield event


async def at_event_time(
    events: Iterable[dict[str, Any]], start_ms: int, deadline: float | None
) -> AsyncIterator[dict[str, Any]]:
    """Yield each event when the wall clock (relative to the start) reaches its event time;
    stop at the monotonic `deadline`."""
    origin = time.monotonic()
    for event in events:
        due = origin + (event["event_time"] - start_ms) / 1000
        if deadline is not None and due >= deadline:
            return
        delay = due - time.monotonic()
        if delay > MIN_SLEEP_S:
            await asyncio.sleep(delay)
        yield event


def _live_total(rate: float, count: int | None, duration_s: float | None) -> int:
    total = int(rate * FOREVER_S)
    if count is not None:
        total = min(total, count)
    if duration_s is not None:
        total = min(total, math.ceil(rate * duration_s))
    return total


async def _run_live(
    sink: Sink,
    *,
    units: tuple[str, ...],
    rate: float,
    count: int | None,
    seed: int,
    scenarios: tuple[str, ...],
    start_ms: int | None,
    duration_s: float | None,
) -> int:
    total = _live_total(rate, count, duration_s)
    if total == 0:
        return 0
    start = now_ms() if start_ms is None else start_ms
    deadline = None if duration_s is None else time.monotonic() + duration_s
    sent = 0
    events = live_events(units, rate, total, seed, scenarios, start)
    async for event in at_event_time(events, start, deadline):
        await sink.send(event)
        sent += 1
    return sent


async def _run_historic(
    sink: Sink,
    *,
    units: tuple[str, ...],
    count: int | None,
    seed: int,
    scenarios: tuple[str, ...],
    start_ms: int | None,
    span_ms: int = HISTORIC_SPAN_MS,
) -> int:
    start = now_ms() - span_ms if start_ms is None else start_ms
    third = span_ms // 3
    incidents = incidents_for(scenarios, units, start + third, start + 2 * third)
    generator = Generator(
        units=units, start_ms=start, span_ms=span_ms, seed=seed, incidents=incidents
    )
    return await sink.send_all(generator.events(DEFAULT_COUNT if count is None else count))


async def simulate(
    settings: Settings,
    bootstrap: str | None,
    *,
    units: tuple[str, ...],
    rate: float | None,
    count: int | None,
    seed: int,
    scenarios: tuple[str, ...],
    wire: str,
    out: Path | None,
    start_ms: int | None,
    duration_s: float | None,
    span_ms: int = HISTORIC_SPAN_MS,
) -> int:
    """Generate events and send them to the input topics (or write them to `out`); return how
    many were produced (subscriber_base snapshots included).

    rate given: live, event times follow the wall clock from start_ms (default now), until
    `count` events or `duration_s` seconds (forever if neither); incidents start 20 s in and
    last 15 minutes. rate None: `count` events (default 100 000) over `span_ms` (default two
    days) from start_ms (default: ending now), as fast as possible; incidents cover the middle
    third.
    """
    _check(units, rate, count, wire)
    incidents_for(scenarios, units, 0, 0)  # fail on an unknown scenario before connecting
    async with _open_sink(settings, bootstrap, wire, out) as sink:
        if rate is None:
            return await _run_historic(
                sink,
                units=units,
                count=count,
                seed=seed,
                scenarios=scenarios,
                start_ms=start_ms,
                span_ms=span_ms,
            )
        return await _run_live(
            sink,
            units=units,
            rate=rate,
            count=count,
            seed=seed,
            scenarios=scenarios,
            start_ms=start_ms,
            duration_s=duration_s,
        )
