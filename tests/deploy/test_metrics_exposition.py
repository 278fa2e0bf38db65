"""`streams.http.metrics.exposition`: the bytes of prometheus_client's generate_latest, faster."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from streams.core.catalog import load_catalog
from streams.core.plan import ScoringPlan
from streams.http.metrics import CemiCollector, LatencyHistogram, exposition, registry_for


def fake_scoring(units: int) -> Any:
    plan = ScoringPlan(load_catalog())
    records: dict[Any, Any] = {}
    for u in range(units):
        unit = f"U{u:03d}"
        for kind in ("day", "month"):
            rows: dict[Any, Any] = {
                ("unit", unit, None, None, None): {
                    "score": 4.0 + u / 1000,
                    "coverage": 1.0,
                    "delta_prev": -0.25,
                    "delta_network": 1e-17,
                    "published_at_ms": 2_000,
                    "newest_event_ingest_ms": 1_000,
                }
            }
            for tp in plan.touchpoints:
                key = ("touchpoint", unit, tp.service, tp.touchpoint, None)
                rows[key] = {"score": 3.25, "coverage": 0.5, "delta_prev": None}
            for index, kpi in enumerate(plan.kpis):
                key = ("kpi", unit, "mobile", "install", f"kpi{index}")
                excluded = index % 7 == 0
                rows[key] = {"score": None if excluded else 2.5, "value": 0.93, "kpi": kpi}
            records[(u % 4, (unit, kind, 0))] = rows
    return SimpleNamespace(
        publisher=SimpleNamespace(
            latest_records=lambda: records,
            latest_programmes=lambda: {
                (0, ("HPG", "month", 0)): {
                    ("install_recovery_hpg", "technicians_trained_share"): {"attainment": 0.6}
                }
            },
        ),
        partitions={},
        evaluator=None,
        counts=lambda: SimpleNamespace(scored=10, duplicates=1, late=2, replayed=3),
        published_records=99,
        alerts_published=4,
    )


def ingest_stats() -> Any:
    return SimpleNamespace(
        consumed=12,
        dead_lettered=Counter({"malformed": 2, "unit_cap": 1}),
        lag={("cx.touchpoint.orders", 0): 5, ("cx.touchpoint.orders", 1): 0},
    )


def test_exposition_is_byte_for_byte_generate_latest_for_the_worker_collector() -> None:
    latency = LatencyHistogram()
    for seconds in (0.2, 0.4, 3.0):  # three publications
        latency.observe(seconds)
    collector = CemiCollector(fake_scoring(3), ingest_stats, "2026.11", latency)
    registry = registry_for(collector)
    fast = exposition(registry)
    assert fast == generate_latest(registry)
    text = fast.decode()
    assert "cemi_score_latency_seconds_count 3.0" in text
    assert fast == exposition(registry)  # a scrape observes nothing
    assert 'cemi_kpi_excluded{kpi="kpi0",' in text
    assert 'cemi_events_dead_lettered_total{reason="unit_cap"} 1.0' in text
    assert (
        'cemi_programme_attainment_ratio{indicator="technicians_trained_share",'
        'programme="install_recovery_hpg",unit="HPG"} 0.6'
    ) in text


def test_exposition_escapes_label_values_like_generate_latest() -> None:
    class Odd(Collector):
        def collect(self) -> Any:
            family = GaugeMetricFamily("odd", "help with \\ and\nnewline", labels=["b", "a"])
            family.add_metric(['quote " back \\ line\n', "plain"], float("inf"))
            family.add_metric(["x", "y"], 12345678901.5)
            yield family

    registry = CollectorRegistry()
    registry.register(Odd())
    assert exposition(registry) == generate_latest(registry)


def test_exposition_falls_back_to_generate_latest_for_other_metric_types() -> None:
    class Info(Collector):
        def collect(self) -> Any:
            yield InfoMetricFamily("build", "Build", value={"version": "1"})

    registry = CollectorRegistry()
    registry.register(Info())
    assert exposition(registry) == generate_latest(registry)


def test_exposition_is_byte_for_byte_generate_latest_for_many_units() -> None:
    # the size `bench/exposition.py` times (how much faster is a benchmark, not a test)
    registry = registry_for(CemiCollector(fake_scoring(20), ingest_stats, "v"))
    assert exposition(registry) == generate_latest(registry)
