"""The event->score latency histogram the collector exports (no broker)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from streams.metrics import LatencyHistogram


def row(published_ms: int, ingest_ms: int | None, final: bool = False) -> dict[str, Any]:
    return {
        "score": 4.0,
        "published_at_ms": published_ms,
        "newest_event_ingest_ms": ingest_ms,
        "final": final,
    }


HPG_DAY = ("HPG", "day", 0)
QBH_DAY = ("QBH", "day", 0)


def test_one_observation_per_window_publication_whatever_the_scrape_count() -> None:
    histogram = LatencyHistogram(buckets=(1.0, 5.0))
    rows = {("unit", "HPG", None, None, None): row(10_000, 9_500)}
    histogram.update([(0, HPG_DAY, rows)])
    histogram.update([(0, HPG_DAY, rows)])  # a second scrape, nothing new published
    assert histogram.counts == [1, 0, 0] and histogram.total == 0.5
    # a new publication of the window: only its changed rows carry the new time
    rows[("service", "HPG", "mobile", None, None)] = row(13_000, 10_000)
    histogram.update([(0, HPG_DAY, rows)])
    assert histogram.counts == [1, 1, 0] and histogram.total == 3.5


def test_final_republications_and_rows_without_ingest_time_are_not_latency() -> None:
    histogram = LatencyHistogram(buckets=(1.0,))
    histogram.update(
        [
            (0, HPG_DAY, {("unit", "HPG", None, None, None): row(90_000_000, 1_000, final=True)}),
            (1, QBH_DAY, {("unit", "QBH", None, None, None): row(5_000, None)}),
        ]
    )
    assert histogram.counts == [0, 0] and histogram.total == 0


def test_windows_gone_from_the_publisher_are_forgotten() -> None:
    histogram = LatencyHistogram(buckets=(1.0,))
    rows = {("unit", "HPG", None, None, None): row(2_000, 500)}
    histogram.update([(0, HPG_DAY, rows)])
    histogram.update([])  # the partition was revoked
    assert histogram._seen == {}
    histogram.update([(0, HPG_DAY, rows)])  # and assigned back: its publication counts again
    assert histogram.counts == [0, 2]


def test_histogram_exposition_is_cumulative_with_inf_sum_and_count() -> None:
    histogram = LatencyHistogram(buckets=(0.5, 2.0))
    for seconds in (0.1, 0.7, 3.0, 9.0):
        histogram.observe(seconds)

    class One(Collector):
        def collect(self) -> Any:
            yield histogram.family("cemi_score_latency_seconds", "latency")

    registry = CollectorRegistry()
    registry.register(One())
    text = generate_latest(registry).decode()
    assert 'cemi_score_latency_seconds_bucket{le="0.5"} 1.0' in text
    assert 'cemi_score_latency_seconds_bucket{le="2.0"} 2.0' in text
    assert 'cemi_score_latency_seconds_bucket{le="+Inf"} 4.0' in text
    assert "cemi_score_latency_seconds_count 4.0" in text
    assert "cemi_score_latency_seconds_sum 12.8" in text
    assert "# TYPE cemi_score_latency_seconds histogram" in text
