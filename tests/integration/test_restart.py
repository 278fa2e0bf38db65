"""Restarts on the default RocksDB store: clean (SIGTERM) and crash (SIGKILL) mid-stream."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from tests.integration.test_stream import (
    LATENESS,
    batch_records,
    generated,
    send,
    settled_scores,
)

pytestmark = pytest.mark.broker


def folded(stream: Any) -> int:
    totals = stream.totals()
    return int(totals["scored"] + totals["duplicates"] + totals["late"])


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_restart_mid_stream_loses_nothing_and_counts_nothing_twice(
    stream_factory: Any, how: signal.Signals
) -> None:
    events = generated(12_000, seed=44)
    stream = stream_factory(store="rocksdb", allowed_lateness_ms=LATENESS)
    worker = stream.worker()
    half = len(events) // 2
    send(stream, events[:half])
    stream.wait_for(lambda: folded(stream) > half // 3, what="some events folded")
    assert worker.process is not None
    worker.process.send_signal(how)  # mid-stream: part of the first half is still unfolded
    worker.process.wait(30)
    send(stream, events[half:])
    restarted = stream.worker()
    stream.wait_for(
        lambda: (restarted.stats() or {}).get("partitions") is not None, what="the restarted worker"
    )
    stream.wait_for(lambda: folded(stream) == len(events), timeout=180, what="everything folded")
    totals = stream.totals()
    assert totals["duplicates"] == len(events) - len({e["event_id"] for e in events})
    assert totals["late"] == 0
    topics = [stream.settings.topic("cemi.scores"), stream.settings.topic("cemi.kpi")]
    assert settled_scores(stream.bootstrap, topics, batch_records(events))[0]
