"""Prometheus metrics, exported at scrape time from the worker's state (a custom collector:
no gauge per key to keep in sync). Served by the worker on `/metrics`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from streams.scoring.service import ScoringService


class CemiCollector(Collector):
    def __init__(
        self,
        scoring: ScoringService,
        ingest_stats: Callable[[], Any],
        catalog_version: str,
    ) -> None:
        self.scoring = scoring
        self.ingest_stats = ingest_stats
        self.catalog_version = catalog_version

    def collect(self) -> Iterator[Metric]:
        yield from self._pipeline()
        yield from self._scores()
        yield from self._alerts()
        info = GaugeMetricFamily("cemi_catalog_info", "Catalog in force", labels=["version"])
        info.add_metric([self.catalog_version], 1.0)
        yield info

    def _pipeline(self) -> Iterator[Metric]:
        stats = self.ingest_stats()
        consumed = CounterMetricFamily("cemi_events_consumed", "Input messages consumed")
        consumed.add_metric([], float(stats.consumed if stats else 0))
        yield consumed
        dead = CounterMetricFamily(
            "cemi_events_dead_lettered", "Input messages dead-lettered", labels=["reason"]
        )
        for reason, count in sorted((stats.dead_lettered if stats else {}).items()):
            dead.add_metric([reason], float(count))
        yield dead
        counts = self.scoring.counts()
        for name, value, text in (
            ("cemi_events_scored", counts.scored, "Valid events folded into the scores"),
            ("cemi_events_duplicate", counts.duplicates, "Events skipped as duplicates"),
            ("cemi_events_late", counts.late, "Events beyond the allowed lateness"),
            ("cemi_events_replayed", counts.replayed, "Re-deliveries skipped by the guard"),
            (
                "cemi_score_records_published",
                self.scoring.published_records,
                "Score records published",
            ),
            (
                "cemi_alert_records_published",
                self.scoring.alerts_published,
                "Alert records published",
            ),
        ):
            family = CounterMetricFamily(name, text)
            family.add_metric([], float(value))
            yield family
        lag = GaugeMetricFamily(
            "cemi_watermark_lag_seconds",
            "Wall clock minus the partition watermark",
            labels=["partition"],
        )
        now_ms = time.time() * 1000
        for partition, runtime in sorted(self.scoring.partitions.items()):
            if runtime.state.watermark_ms is not None:
                lag.add_metric([str(partition)], (now_ms - runtime.state.watermark_ms) / 1000)
        yield lag

    def _scores(self) -> Iterator[Metric]:
        score = GaugeMetricFamily(
            "cemi_score",
            "Latest published CEMI (current windows)",
            labels=["level", "unit", "service", "touchpoint", "window"],
        )
        newest: dict[tuple[str, str], tuple[int, dict[Any, Any]]] = {}
        for (_, (unit, kind, start)), scores in self.scoring.publisher.latest_scores():
            if (unit, kind) not in newest or newest[(unit, kind)][0] < start:
                newest[(unit, kind)] = (start, scores)
        for (_, kind), (_, scores) in sorted(newest.items()):
            for (level, owner, service, touchpoint, kpi), value in scores.items():
                if kpi is None and value is not None:
                    score.add_metric(
                        [level, owner or "", service or "", touchpoint or "", kind], value
                    )
        yield score

    def _alerts(self) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "cemi_alert_active",
            "1 while the alert fires",
            labels=["unit", "service", "touchpoint", "rule"],
        )
        evaluator = self.scoring.evaluator
        for runtime in self.scoring.partitions.values():
            for unit, unit_state in sorted(runtime.state.units.items()):
                rolling = unit_state.rolling
                if rolling is None:
                    continue
                for index, machine in sorted(rolling.machines.items()):
                    if machine.state == "firing":
                        rule, service, touchpoint = evaluator.key_of(index)
                        active.add_metric([unit, service, touchpoint or "", rule], 1.0)
        yield active


def registry_for(collector: CemiCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
