"""A worker killed (SIGKILL) at the exact dangerous moment loses nothing: every alert
transition, late record and acknowledgement is published or applied after the restart, and
the unit cap decides the same after a restart.

The moment is armed with `CEMI_FAULT_AT` (streams/worker/faults.py): the worker kills itself there,
after `CEMI_FAULT_PAUSE_MS` during which the rest of it goes on (folds, flushes, commits).
The restarted worker runs without it. The same holes, without Kafka and without a kill, are
in tests/scoring/test_durability.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from streams.alert_client import send_ack
from streams.tools.tail import latest_by_key
from tests.factories import event
from tests.integration.conftest import Stream, Worker
from tests.integration.test_alerts import alert_log
from tests.integration.test_faults import consumer_lag, folded, settle, stats_of, wait_ready
from tests.integration.test_stream import send
from tests.scoring.test_alerting import HOUR, START, backlog_events, fold_alerts

pytestmark = pytest.mark.broker
KILLED = -9


def killed_at_fault(stream: Stream, worker: Worker, point: str) -> None:
    """Wait for the worker to kill itself at the armed point; the next worker runs unarmed."""
    assert worker.process is not None
    stream.wait_for(lambda: worker.process.poll() is not None, timeout=240, what=point)
    assert worker.process.returncode == KILLED, worker.log.read_text()[-3000:]
    assert f"fault point {point} reached" in worker.log.read_text()
    stream.env.pop("CEMI_FAULT_AT")


def restarted(stream: Stream) -> Worker:
    worker = stream.worker()
    wait_ready(stream, worker)
    stream.wait_for(lambda: consumer_lag(worker) == 0, timeout=240, what="input read")
    return worker


def transitions(alerts: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {(a["alert_id"], a["state"], a["started_at_ms"]) for a in alerts}


def test_alert_transitions_taken_for_sending_survive_a_kill_before_the_send(
    stream_factory: Any, default_plan: Any
) -> None:
    """Killed while an emit holds alert records not yet sent, after a flush persisted the
    alert state (the events keep arriving, paced as a live stream, so the fold and its
    flushes go on meanwhile): the restarted worker publishes the records (they left the
    persisted outbox only once sent)."""
    events = backlog_events(payment_outage=True)
    expected = transitions(fold_alerts(default_plan, events, size=500))
    stream = stream_factory(fault_at="emit:alert", fault_pause_ms="6000")
    worker = stream.worker()
    # paced from when the worker folds (a worker joining its groups would meet a backlog)
    first = send(stream, events[:1_500], "avro")
    stream.wait_for(lambda: folded(stats_of([worker])) == first, what="the first batch")
    sender = threading.Thread(target=send_paced, args=(stream, events[1_500:]), daemon=True)
    sender.start()
    killed_at_fault(stream, worker, "emit:alert")
    sender.join(120)
    second = restarted(stream)
    settle(stream, [second], len(events), quiet_s=15)
    stream.wait_for(
        lambda: transitions(alert_log(stream)) >= expected, timeout=60, what="every transition"
    )
    assert transitions(alert_log(stream)) == expected


def send_paced(stream: Stream, events: list[dict[str, Any]], chunk: int = 1_500) -> None:
    """As a live stream arrives: small batches, well within the idle time of each other."""
    for start in range(0, len(events), chunk):
        send(stream, events[start : start + chunk], "avro")
        time.sleep(0.4)


def test_late_records_counted_before_a_kill_are_published_after_it(stream_factory: Any) -> None:
    """Killed while an emit holds late records not yet sent, with the fold going on (and
    flushing their count): the restarted worker publishes every one of them."""
    stream = stream_factory(
        fault_at="emit:late", fault_pause_ms="6000", allowed_lateness_ms="60000"
    )
    worker = stream.worker()
    install = {"kind": "install", "status": "completed"}

    def batch(minute: int, count: int, prefix: str) -> list[dict[str, Any]]:
        at = START + minute * 60_000
        return [
            {**event("install", **install), "event_id": f"{prefix}{i}", "event_time": at + i}
            for i in range(count)
        ]

    send(stream, batch(60, 200, "now-"), "json")  # the watermark reaches START + 1 h
    stream.wait_for(lambda: folded(stats_of([worker])) == 200, what="the first batch")
    late = batch(10, 50, "late-")  # 50 min behind: past the 1 min lateness
    send(stream, late, "json")
    # the fold goes on during the kill's pause (its flushes persist the late count)
    stop = threading.Event()

    def keep_sending() -> None:
        minute = 61
        while not stop.is_set() and worker.process is not None and worker.process.poll() is None:
            send(stream, batch(minute, 20, f"more{minute}-"), "json")
            minute += 1
            time.sleep(0.5)

    sender = threading.Thread(target=keep_sending, daemon=True)
    sender.start()
    try:
        killed_at_fault(stream, worker, "emit:late")
    finally:
        stop.set()
        sender.join(30)
    second = restarted(stream)
    stream.wait_for(lambda: stats_of([second])["late"] >= len(late), what="the late count")

    def published() -> set[str]:
        topic = stream.settings.topic("late")
        records = asyncio.run(latest_by_key(stream.bootstrap, topic, idle_exit_s=2))
        return {r["event_id"] for r in records.values()}

    wanted = {e["event_id"] for e in late}
    stream.wait_for(lambda: published() >= wanted, timeout=60, what="every late record")
    assert stats_of([second])["late"] == len(late)


def test_an_acknowledgement_survives_a_kill_right_after_it_was_applied(
    stream_factory: Any,
) -> None:
    """Killed a few seconds after applying an acknowledgement (time for a commit) with the
    stream idle: the restarted worker still knows it, so the alert's `resolved` record names
    who acknowledged it."""
    events = backlog_events()
    cut = START + 3 * HOUR  # the HPG install alert fired (from 08:05) and is still firing
    stream = stream_factory(fault_at="ack:applied", fault_pause_ms="6000")
    worker = stream.worker()
    first = send(stream, [e for e in events if e["event_time"] < cut], "avro")
    stream.wait_for(lambda: folded(stats_of([worker])) == first, what="the first part")

    def install_firing() -> dict[str, Any] | None:
        found = [a for a in alert_log(stream) if a["touchpoint"] == "install"]
        return found[-1] if found and found[-1]["state"] == "firing" else None

    stream.wait_for(lambda: install_firing() is not None, what="the install alert")
    alert = install_firing()
    assert alert is not None
    asyncio.run(send_ack(stream.settings, stream.bootstrap, alert["alert_id"], "ops-anna"))
    killed_at_fault(stream, worker, "ack:applied")
    second = restarted(stream)
    rest = send(stream, [e for e in events if e["event_time"] >= cut], "avro")
    settle(stream, [second], first + rest, quiet_s=15)

    def resolved() -> dict[str, Any] | None:
        found = [
            a
            for a in alert_log(stream)
            if a["alert_id"] == alert["alert_id"] and a["state"] == "resolved"
        ]
        return found[-1] if found else None

    stream.wait_for(lambda: resolved() is not None, timeout=60, what="the resolution")
    record = resolved()
    assert record is not None and record["acknowledged_by"] == "ops-anna", record


def test_the_unit_cap_admits_the_same_units_after_a_restart(stream_factory: Any) -> None:
    """Two units admitted (cap 2, one partition); after a restart a third unit's events come
    first: still refused (dead-lettered `unit_cap`), never partly scored."""
    stream = stream_factory(max_units="2", partitions="1")
    worker = stream.worker()
    install = {"kind": "install", "status": "completed"}
    when = "2026-11-05 10:00"
    admitted = [
        event("install", when, unit=u, **install) for u in ("HPG", "QBH") for _ in range(20)
    ]
    send(stream, admitted, "json")
    stream.wait_for(lambda: folded(stats_of([worker])) == 40, what="two units folded")
    worker.stop()
    second = stream.worker()
    wait_ready(stream, second)
    third = [event("install", when, unit="HNI", **install) for _ in range(15)]
    send(stream, [*third, event("install", when, unit="HPG", **install)], "json")
    stream.wait_for(lambda: folded(stats_of([second])) == 41, what="HPG folded after HNI")
    stats = second.stats() or {}
    assert stats["dead_lettered"].get("unit_cap") == 15, stats
    scores = asyncio.run(
        latest_by_key(stream.bootstrap, stream.settings.topic("cemi.scores"), idle_exit_s=2)
    )
    assert {r["unit"] for r in scores.values() if r["unit"]} == {"HPG", "QBH"}
