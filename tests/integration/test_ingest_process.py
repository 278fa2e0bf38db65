"""The ingest child process: it dies with its worker, and one killed alone is started again
without losing or double-counting an event."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_restart import folded
from tests.integration.test_stream import batch_records, generated, send, settled_scores

pytestmark = pytest.mark.broker


def ingest_child(worker: Any, timeout: float = 60) -> int:
    """The pid of the worker's ingest child, once it runs."""
    pid = worker.process.pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for child in children:
            if b"streams.ingest.process" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
        time.sleep(0.2)
    raise AssertionError("no ingest child process")


def gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
        except FileNotFoundError:
            return True
        if state == "Z":  # dead, not yet reaped by whoever adopted it
            return True
        time.sleep(0.1)
    return False


def test_a_killed_worker_leaves_no_ingest_process_behind(stream_factory: Any) -> None:
    stream = stream_factory()
    worker = stream.worker()
    child = ingest_child(worker)
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait(10)
    assert gone(child), "the ingest child outlived its SIGKILLed worker"


def test_a_stopped_worker_stops_its_ingest_process(stream_factory: Any) -> None:
    stream = stream_factory()
    worker = stream.worker()
    child = ingest_child(worker)
    # it logs at the worker's level (`--loglevel info`), not at its root logger's DEBUG
    assert Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[4] == b"INFO"
    worker.stop()
    assert worker.process.returncode == 0
    assert gone(child)


def test_an_ingest_process_killed_alone_is_started_again_and_loses_nothing(
    stream_factory: Any,
) -> None:
    events = generated(12_000, seed=45)
    stream = stream_factory()
    worker = stream.worker()
    half = len(events) // 2
    send(stream, events[:half])
    stream.wait_for(lambda: folded(stream) > half // 3, what="some events folded")
    first = ingest_child(worker)
    os.kill(first, signal.SIGKILL)  # mid-stream: sent envelopes whose offsets are uncommitted
    send(stream, events[half:])
    second = ingest_child(worker)
    assert second != first
    stream.wait_for(lambda: folded(stream) == len(events), timeout=180, what="everything folded")
    totals = stream.totals()
    assert totals["duplicates"] == len(events) - len({e["event_id"] for e in events})
    assert totals["late"] == 0
    assert worker.process.poll() is None, "the worker itself went on"
    topics = [stream.settings.topic("cemi.scores"), stream.settings.topic("cemi.kpi")]
    assert settled_scores(stream.bootstrap, topics, batch_records(events))[0]
