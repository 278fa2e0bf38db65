"""Alerts through the real worker: the install-backlog scenario, restart, acknowledge."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from streams.alert_client import current_alerts, send_ack
from streams.tools.tail import read_topic
from tests.integration.test_stream import send
from tests.scoring.test_alerting import backlog_events

pytestmark = pytest.mark.broker


def alert_log(stream: Any) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        topic = stream.settings.topic("cemi.alerts")
        return [r async for _, r in read_topic(stream.bootstrap, topic, idle_exit_s=1.5)]

    return asyncio.run(read())


def test_install_backlog_alert_fires_once_survives_restart_and_is_acknowledged(
    stream_factory: Any,
) -> None:
    events = backlog_events(payment_outage=True)
    stream = stream_factory()
    worker = stream.worker()
    sent = send(stream, events, "avro")
    stream.wait_for(
        lambda: sum(stream.totals()[k] for k in ("scored", "duplicates", "late")) == sent,
        timeout=180,
        what="all events folded",
    )
    stream.wait_for(
        lambda: any(a["touchpoint"] == "install" for a in alert_log(stream)), what="install alerts"
    )
    time.sleep(2)
    before = alert_log(stream)
    install = [
        (a["unit"], a["service"], a["state"]) for a in before if a["touchpoint"] == "install"
    ]
    assert install == [("HPG", "fixed_broadband", "firing"), ("HPG", "fixed_broadband", "resolved")]
    firing = next(a for a in before if a["touchpoint"] == "install")
    assert firing["top_kpis"][0]["kpi"] == "install_on_time"

    # A restart recovers the alert state from the changelog: nothing is raised again.
    time.sleep(2)  # let the last flush tick land
    worker.stop()
    stream.worker()
    stream.wait_for(lambda: stream.workers[-1].stats() is not None, what="the restarted worker")
    time.sleep(5)
    after = alert_log(stream)

    def transitions(log: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((a["alert_id"], a["state"], a["started_at_ms"]) for a in log)

    assert transitions(after) == transitions(before)

    still_firing = asyncio.run(current_alerts(stream.settings, stream.bootstrap))
    target = next(a for a in still_firing if (a["unit"], a["touchpoint"]) == ("QBH", "payment"))
    asyncio.run(send_ack(stream.settings, stream.bootstrap, target["alert_id"], "ops-anna"))
    stream.wait_for(
        lambda: any(
            a["alert_id"] == target["alert_id"]
            and a["state"] == "acknowledged"
            and a["acknowledged_by"] == "ops-anna"
            for a in alert_log(stream)
        ),
        what="the acknowledgement",
    )


def test_paced_live_sending_and_a_full_speed_replay_raise_the_same_alerts(
    stream_factory: Any,
) -> None:
    """Audit: the same events, once paced in small batches (as a live stream arrives) and once
    all at once (a replay at full speed), give the same alert records through the broker."""
    events = backlog_events(payment_outage=True)
    keys = ("alert_id", "state", "started_at_ms", "resolved_at_ms")

    def alerts_of(stream: Any) -> list[tuple[Any, ...]]:
        return sorted(tuple(a[k] for k in keys) for a in alert_log(stream))

    def run(paced: bool) -> list[tuple[Any, ...]]:
        stream = stream_factory()
        stream.worker()
        sent = 0
        if paced:
            chunk = 1_500
            for start in range(0, len(events), chunk):
                sent += send(stream, events[start : start + chunk], "avro")
                time.sleep(0.4)  # well under the idle time: the watermark follows the events
        else:
            sent = send(stream, events, "avro")
        stream.wait_for(
            lambda: sum(stream.totals()[k] for k in ("scored", "duplicates", "late")) == sent,
            timeout=240,
            what="all events folded",
        )
        stream.wait_for(lambda: len(alerts_of(stream)) >= 3, what="the alerts")
        time.sleep(3)  # the last emit
        found = alerts_of(stream)
        stream.workers[0].stop()
        return found

    paced, replayed = run(paced=True), run(paced=False)
    assert paced == replayed
    states = {state for _, state, _, _ in paced}
    assert {"firing", "resolved"} <= states
