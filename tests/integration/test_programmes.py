"""Action programmes through the broker: the stream's programme records equal `cemi score`'s,
and a team reports an indicator over HTTP or with `cemi programme report`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from typing import Any

import orjson
import pytest

from streams.batch import Replay
from streams.core.catalog import load_catalog
from streams.core.plan import ScoringPlan
from streams.tools.simulate.generator import DAY_MS, Generator, Incident
from streams.tools.tail import latest_by_key
from tests.factories import local_ms
from tests.integration.conftest import CEMI
from tests.integration.test_stream import send

pytestmark = pytest.mark.broker
TOKEN = "programme-token-0123456789"


def history() -> list[dict[str, Any]]:
    """HPG and QBH from 20 October for 20 days; an install backlog in HPG from 28 October to
    5 November, and the recovery programme's updates from then on (it starts 1 November)."""
    start = local_ms("2026-10-20 00:00")
    incident = Incident("install_backlog", "HPG", start + 8 * DAY_MS, start + 16 * DAY_MS)
    generator = Generator(
        units=("HPG", "QBH"), start_ms=start, span_ms=20 * DAY_MS, seed=31, incidents=(incident,)
    )
    return list(generator.events(15_000))


def key(record: dict[str, Any]) -> tuple[Any, ...]:
    return record["window"], record["window_start"], record["unit"], record["indicator"]


def comparable(record: dict[str, Any]) -> tuple[Any, ...]:
    effect = [
        (e["kpi"], _rounded(e["unit_delta"]), _rounded(e["network_delta"]))
        for e in record["effect"]
    ]
    return (
        record["value"],
        record["target"],
        _rounded(record["attainment"]),
        record["on_track"],
        effect,
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 9)


def test_programme_records_equal_cemi_score_and_teams_report_over_http_and_the_cli(
    stream_factory: Any,
) -> None:
    events = history()
    assert sum(e["type"] == "programme_update" for e in events) > 50
    replay = Replay(ScoringPlan(load_catalog()))
    replay.add_lines(orjson.dumps(e) for e in events)
    batch = {
        key(r): comparable(r)
        for kind in ("day", "month")
        for r in replay.records(kind, complete=True)
        if r["level"] == "programme"
    }
    assert len(batch) > 15  # 8 days and a month of November, 2 indicators each
    stream = stream_factory(api_token=TOKEN)
    worker = stream.worker()
    sent = send(stream, events, "avro")
    stream.wait_for(
        lambda: sum(stream.totals()[k] for k in ("scored", "duplicates", "late")) == sent,
        timeout=240,
        what="all events folded",
    )
    topic = stream.settings.topic("cemi.programmes")
    deadline = time.monotonic() + 90
    while True:
        latest = asyncio.run(latest_by_key(stream.bootstrap, topic, idle_exit_s=2))
        got = {key(r): comparable(r) for r in latest.values()}
        missing = [k for k, v in batch.items() if got.get(k) != v]
        if not missing:
            break
        assert time.monotonic() < deadline, (missing[0], got.get(missing[0]), batch[missing[0]])
        time.sleep(2)

    # a team without a producer reports over HTTP (token) ...
    request = urllib.request.Request(
        f"http://127.0.0.1:{worker.port}/api/v1/programmes/install_recovery_hpg/updates",
        data=json.dumps(
            {"unit": "HPG", "indicator": "technicians_trained_share", "value": 0.77}
        ).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 202
    # ... or from the command line; the API shows today's value
    reported = subprocess.run(
        [
            CEMI,
            "programme",
            "report",
            "install_recovery_hpg",
            "install_backlog_orders",
            "35",
            "--unit",
            "HPG",
        ],
        env=stream.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert reported.returncode == 0, reported.stderr

    def today() -> dict[str, Any]:
        url = f"http://127.0.0.1:{worker.port}/api/v1/programmes?window=day&unit=HPG"
        with urllib.request.urlopen(url, timeout=5) as reply:
            body = json.loads(reply.read())
        return {r["indicator"]: r["value"] for r in body["programmes"]}

    stream.wait_for(
        lambda: today() == {"technicians_trained_share": 0.77, "install_backlog_orders": 35.0},
        timeout=60,
        what="today's reported values in the API",
    )
    refused = subprocess.run(
        [CEMI, "programme", "report", "install_recovery_hpg", "nope", "1", "--unit", "HPG"],
        env=stream.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2 and "unknown_indicator" in refused.stderr
