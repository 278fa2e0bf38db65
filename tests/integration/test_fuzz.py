"""Fuzz: a running worker fed ≥ 10,000 malformed messages, 10,000 made-up unit codes and five
1 MB payloads, interleaved with valid events, with customer_ref pseudonymisation on.

Checks: the worker never crashes; every hostile message is in the dead-letter topic with a
reason, matched one to one by source topic/partition/offset (dead-lettered == bad sent); the
valid events are scored exactly as `cemi score` scores them; the distinct-unit cap holds and
the Prometheus series stay bounded; no output topic, internal topic, changelog, metric or
log line contains a raw customer_ref. The longest stretch without ingest progress while input
remained is measured and printed (an assertion only catches a hang).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import threading
import time
import urllib.request
from collections import Counter
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.tools.tail import read_topic
from streams.topics import Topics
from streams.wire.codec import encode
from streams.wire.schemas import SchemaStore
from tests.integration.test_stream import (
    LATENESS,
    UNITS,
    assert_same_scores,
    batch_records,
    generated,
    stream_records,
)
from tests.security.malformed import RAW_REF, Malformed, made_up_units

pytestmark = pytest.mark.broker
UNIT_LABEL = re.compile(r'unit="([^"]*)"')

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))  # < 1 for a quick look; the proof is 1
VALID = int(20_000 * SCALE)
MALFORMED = int(12_000 * SCALE)
MADE_UP_UNITS = int(10_000 * SCALE)
ONE_MB_PAYLOADS = 5
WARM_UP = 3_000  # valid events first, so the real units hold the unit cap's places
HMAC_KEY = "fuzz-test-hmac-key-0123456789abcdef"
HANG_S = 15.0  # a stall this long is a hang, whatever the machine


class ProgressProbe(threading.Thread):
    """Polls the worker's /api/v1/stats every 50 ms: (monotonic time, consumed)."""

    def __init__(self, worker: Any) -> None:
        super().__init__(daemon=True)
        self.worker = worker
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            stats = self.worker.stats()
            if stats is not None:
                self.samples.append((time.monotonic(), stats["consumed"]))
            time.sleep(0.05)

    def longest_stall(self, start: float, total: int) -> tuple[float, float]:
        """Longest time without a new consumed count while consumed < total, from `start`;
        (seconds, when it began relative to start)."""
        longest, at = 0.0, 0.0
        last_change, last_count = start, -1
        for when, count in self.samples:
            if when < start:
                last_count = count
                continue
            if count != last_count:
                last_change, last_count = when, count
            elif count < total and when - last_change > longest:
                longest, at = when - last_change, last_change - start
        return longest, at


def plan_messages(
    topics: Topics, valid: list[dict[str, Any]], store: SchemaStore
) -> list[tuple[str, bytes | None, bytes | None, str]]:
    """(topic, value, key, category) in send order: valid events in their order, hostile
    messages at random places between them."""
    rng = random.Random(77)
    hostile: list[tuple[str, bytes | None, bytes | None, str]] = []
    for i, (etype, value, category) in enumerate(Malformed(77, store).messages(MALFORMED)):
        key = f"{RAW_REF}-key-{i}".encode() if i % 2 or value is None else None
        hostile.append((topics.input(etype), value, key, category))
    for i, event in enumerate(made_up_units(MADE_UP_UNITS, seed=78)):
        value = orjson.dumps(event) if i % 2 else encode(store.current_event("payment"), event)
        hostile.append((topics.input("payment"), value, None, "unit_cap"))
    big = Malformed(79, store)
    for _ in range(ONE_MB_PAYLOADS):
        etype, value, category = big.one_megabyte()
        hostile.append((topics.input(etype), value, None, category))
    rng.shuffle(hostile)
    messages: list[tuple[str, bytes | None, bytes | None, str]] = []
    for i, event in enumerate(valid):
        value = encode(store.current_event(event["type"]), event) if i % 2 else None
        value = value or orjson.dumps(event)
        messages.append((topics.input(event["type"]), value, None, "valid"))
    # splice the hostile messages in at random positions among the valid ones
    slots = sorted(rng.randrange(len(messages) + 1) for _ in hostile)
    out: list[tuple[str, bytes | None, bytes | None, str]] = []
    j = 0
    for position, message in enumerate(messages):
        while j < len(slots) and slots[j] == position:
            out.append(hostile[j])
            j += 1
        out.append(message)
    out.extend(hostile[j:])
    return out


async def produce(
    bootstrap: str, messages: list[tuple[str, bytes | None, bytes | None, str]]
) -> list[tuple[str, int, int, str]]:
    """Send in order; (topic, partition, offset, category) of each message."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=10,
        max_batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for topic, value, key, _ in messages]
        sent = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [
        (meta.topic, meta.partition, meta.offset, category)
        for meta, (_, _, _, category) in zip(sent, messages, strict=True)
    ]


async def raw_bytes_of_topics(bootstrap: str, name: str, inputs: set[str]) -> dict[str, bytes]:
    """Every key and value of every topic of this deployment except the inputs."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await probe.start()
    try:
        topics = sorted(t for t in await probe.topics() if name in t)
    finally:
        await probe.stop()
    found: dict[str, bytes] = {}
    for topic in topics:
        if topic in inputs:
            continue
        chunks: list[bytes] = []
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        try:
            # to the fetch high watermark (some topics get a record every emit interval)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for r in records:
                        chunks.append(r.key or b"")
                        chunks.append(r.value or b"")
                assigned = consumer.assignment()
                at_end = [
                    (end := consumer.highwater(tp)) is not None
                    and await consumer.position(tp) >= end
                    for tp in assigned
                ]
                if assigned and all(at_end):
                    break
            else:
                raise AssertionError(f"could not read {topic} to its end")
        finally:
            await consumer.stop()
        found[topic] = b"\x00".join(chunks)
    return found


def test_fuzz_hostile_input_with_valid_events(stream_factory: Any) -> None:
    started = time.monotonic()
    store = SchemaStore()
    valid = generated(VALID, seed=33)
    for i, event in enumerate(valid):
        valid[i] = {**event, "customer_ref": f"{RAW_REF}-valid-{i}"}
    assert {e["unit"] for e in valid[:WARM_UP]} == set(UNITS)
    stream = stream_factory(
        allowed_lateness_ms=LATENESS,
        # the cap is per envelope partition (its share of CEMI_MAX_UNITS): one partition,
        # so the cap is exactly the real units and every made-up one is refused
        max_units=str(len(UNITS)),
        partitions="1",
        customer_ref_hmac_key=HMAC_KEY,
    )
    settings = stream.settings
    topics = Topics(settings)
    worker = stream.worker()

    # warm-up: valid events of every real unit first (the cap keeps the first units it sees)
    warm = [(topics.input(e["type"]), orjson.dumps(e), None, "valid") for e in valid[:WARM_UP]]
    asyncio.run(produce(stream.bootstrap, warm))
    stream.wait_for(lambda: stream.totals()["consumed"] == WARM_UP, what="the warm-up events")

    messages = plan_messages(topics, valid[WARM_UP:], store)
    hostile_count = sum(1 for m in messages if m[3] != "valid")
    total = WARM_UP + len(messages)
    probe = ProgressProbe(worker)
    probe.start()
    phase_start = time.monotonic()
    coordinates = asyncio.run(produce(stream.bootstrap, messages))
    sent_s = time.monotonic() - phase_start
    bad = {(t, p, o): c for t, p, o, c in coordinates if c != "valid"}
    assert len(bad) == hostile_count >= MALFORMED + MADE_UP_UNITS

    stream.wait_for(
        lambda: stream.totals()["consumed"] == total, timeout=180, what="every message consumed"
    )
    consumed_s = time.monotonic() - phase_start
    stream.wait_for(
        lambda: sum(stream.totals()[k] for k in ("scored", "duplicates", "late")) == len(valid),
        what=f"every valid event folded (now {stream.totals()}, {worker.stats()})",
        timeout=30,
    )
    probe.done.set()
    probe.join()
    stall, stall_at = probe.longest_stall(phase_start, total)
    assert worker.process is not None and worker.process.poll() is None, "the worker died"

    # every hostile message is dead-lettered, one to one, with a reason
    async def dead_letters() -> list[dict[str, Any]]:
        topic = settings.topic("deadletter")
        return [r async for _, r in read_topic(stream.bootstrap, topic, idle_exit_s=2)]

    dead = asyncio.run(dead_letters())
    dead_at = {(d["source_topic"], d["source_partition"], d["source_offset"]): d for d in dead}
    assert len(dead) == len(dead_at) == len(bad)
    assert set(dead_at) == set(bad)
    assert all(d["reason_code"] and d["reason"] for d in dead)
    codes = Counter(d["reason_code"] for d in dead)
    assert codes["unit_cap"] == MADE_UP_UNITS
    assert codes["too_large"] >= ONE_MB_PAYLOADS
    stats = worker.stats()
    assert stats is not None and sum(stats["dead_lettered"].values()) == len(bad)
    totals = stream.totals()
    assert totals["late"] == 0

    # valid events scored exactly as the batch replay scores them
    batch = batch_records(valid)
    scores = [settings.topic("cemi.scores"), settings.topic("cemi.kpi")]
    deadline = time.monotonic() + 60
    while True:
        try:
            compared = assert_same_scores(stream_records(stream.bootstrap, scores), batch)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    assert compared > 3000

    # the distinct-unit cap bounds the Prometheus series
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as reply:
        metrics = reply.read().decode()
    series = [line for line in metrics.splitlines() if line and not line.startswith("#")]
    unit_labels = set(re.findall(r'unit="([^"]*)"', metrics))
    # no made-up unit got a series: everything per unit belongs to the units the cap admitted
    assert unit_labels - {""} <= set(UNITS)
    per_unit = Counter(m.group(1) for m in map(UNIT_LABEL.search, series) if m and m.group(1))
    unitless = len(series) - sum(per_unit.values())
    assert unitless < 200  # counters, reasons (a fixed set), lags, network-level scores
    reasons = set(re.findall(r'dead_lettered_total\{reason="([^"]*)"', metrics))
    assert reasons == set(codes)

    # no raw customer_ref anywhere downstream: topics, changelogs, metrics, the log
    name = settings.topic_prefix
    inputs = set(Topics(settings).inputs)
    outputs = asyncio.run(raw_bytes_of_topics(stream.bootstrap, name, inputs))
    assert (
        settings.topic("deadletter") in outputs and settings.topic("internal.envelopes") in outputs
    )
    assert any("changelog" in t for t in outputs), sorted(outputs)
    leaks = [t for t, data in outputs.items() if RAW_REF.encode() in data]
    assert not leaks, f"raw customer_ref in {leaks}"
    assert RAW_REF not in metrics
    log = worker.log.read_text(errors="replace")
    assert RAW_REF not in log
    assert "Traceback" not in log and "crashed" not in log.lower(), log[-3000:]

    withheld = sum(1 for d in dead if d["original"] == b"")
    print(
        f"\nfuzz: {total} messages ({len(valid)} valid, {hostile_count} hostile: {MALFORMED} "
        f"malformed, {MADE_UP_UNITS} made-up units, {ONE_MB_PAYLOADS} x 1 MB); "
        f"dead-lettered {len(dead)} = hostile sent, reasons {dict(sorted(codes.items()))}; "
        f"valid: scored {totals['scored']}, duplicates {totals['duplicates']}, late 0; "
        f"{compared} score records equal to the batch replay; metrics: {len(series)} series, "
        f"unit labels {sorted(unit_labels - {''})} (max {max(per_unit.values())} series per "
        f"unit, {unitless} without a unit); originals withheld {withheld}, re-encoded "
        f"{len(dead) - withheld}; {len(outputs)} topics searched, no raw customer_ref; "
        f"sent in {sent_s:.1f} s, all consumed {consumed_s:.1f} s after the first send; "
        f"longest stretch without ingest progress {stall:.2f} s (at +{stall_at:.1f} s); "
        f"test {time.monotonic() - started:.0f} s"
    )
    assert stall < HANG_S
