"""The event->score latency histogram the collector exports (no broker); what feeds it is
in tests/scoring/test_service.py."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from streams.http.metrics import LatencyHistogram


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
