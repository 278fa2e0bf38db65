"""The worker's handle on its ingest child: settings handed over whole, counters continued."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
from pydantic import SecretStr

from streams.ingest.process import IngestProcess, settings_payload, stats_line
from streams.ingest.stage import IngestStats
from streams.settings import Settings, load_settings


def test_settings_reach_the_child_whole_with_their_secrets(tmp_path: Path) -> None:
    settings = load_settings(
        broker_url="k1:9092",
        topic_prefix="p1",
        catalog=None,
        data_dir=tmp_path,
        max_units=7,
        customer_ref_hmac_key=SecretStr("0123456789abcdef-key"),
    )
    child = Settings(**orjson.loads(settings_payload(settings)))
    assert child == settings
    assert child.hmac_key == b"0123456789abcdef-key"
    assert child.data_dir == tmp_path and child.max_units == 7


def test_counters_continue_across_a_restarted_child() -> None:
    handle = IngestProcess(load_settings(), "unused:1")
    first = IngestStats(consumed=10, enveloped=8, batches=2, running=True)
    first.dead_lettered["bad_json"] = 2
    first.lag[("cx.orders", 1)] = 5
    handle._update(orjson.loads(stats_line(first)))
    assert handle.stats.consumed == 10 and handle.stats.lag == {("cx.orders", 1): 5}
    assert handle.stats.running
    handle._child_ended()
    assert not handle.stats.running and handle.stats.consumed == 10
    second = IngestStats(consumed=3, enveloped=2, batches=1, running=True)
    second.dead_lettered["unit_cap"] = 1
    handle._update(orjson.loads(stats_line(second)))
    stats = handle.stats
    assert (stats.consumed, stats.enveloped, stats.batches) == (13, 10, 3)
    assert stats.dead_lettered == Counter(bad_json=2, unit_cap=1)
