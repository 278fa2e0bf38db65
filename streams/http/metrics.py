"""Prometheus metrics, exported at scrape time from the worker's state (a custom collector:
no gauge per key to keep in sync). Served by the worker on `/metrics`.

Names follow Prometheus conventions: base units (seconds), `_total` on counters (added by
`CounterMetricFamily`), `_ratio` for 0..1 values, `_info` for constant labels. Unit, service,
touchpoint and KPI labels come from the catalog and from validated unit codes whose number is
capped by `CEMI_MAX_UNITS` (events of more units are dead-lettered), so the series count is
bounded whatever the input.

Score metrics (`window` label: `day`, `month`, and `rolling` for the alerting window):
- `cemi_score{level,unit,service,touchpoint,window}`: latest CEMI (touchpoint, service, unit)
- `cemi_coverage_ratio{level,unit,service,touchpoint,window}`: share of the nominal child weight
  that was present (the rest was excluded)
- `cemi_score_delta_previous`, `cemi_score_delta_network` (same labels): the records' deltas
  versus the previous window of the same kind and versus the network mean
- `cemi_kpi_points{unit,service,touchpoint,kpi,window}`: KPI points 1..5
- `cemi_kpi_value{unit,service,touchpoint,kpi,window}`: the KPI's raw value
- `cemi_kpi_excluded{unit,service,touchpoint,kpi,window}`: 1 when the KPI did not occur (zero
  denominator: left out, its weight redistributed), else 0
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from streams.scoring.programme_alerts import RULE
from streams.scoring.service import ScoringService

# event ingest -> score publication; the emit interval (1 s by default) is the floor
LATENCY_BUCKETS_S: Final = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)

WindowRecords = tuple[int, tuple[str, str, int], Mapping[Any, Mapping[str, Any]]]


class LatencyHistogram:
    """Cumulative event->score latency: one observation per window publication, made when
    the publication is built (`ScoringService.observe_latency`), whatever the scrapes do.
    Final re-publications (a window closing, no new event) are not latency."""

    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS_S) -> None:
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        index = next((i for i, b in enumerate(self.bounds) if seconds <= b), len(self.bounds))
        self.counts[index] += 1
        self.total += seconds

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.total)


def _label(value: str | None) -> str:
    return value or ""


class CemiCollector(Collector):
    def __init__(
        self,
        scoring: ScoringService,
        ingest_stats: Callable[[], Any],
        catalog_version: str,
        latency: LatencyHistogram | None = None,
        dead_lettered: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self.scoring = scoring
        self.ingest_stats = ingest_stats
        # by reason, the ingest's refusals and the fold's (default: the ingest's only)
        self.dead_lettered = dead_lettered or (
            lambda: stats.dead_lettered if (stats := self.ingest_stats()) else {}
        )
        self.catalog_version = catalog_version
        self.latency = latency or LatencyHistogram()

    def collect(self) -> Iterator[Metric]:
        yield from self._pipeline()
        yield from self._scores()
        yield from self._alerts()
        yield from self._programmes()
        info = GaugeMetricFamily(
            "cemi_catalog_info", "Catalog version in force (value 1)", labels=["version"]
        )
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
        for reason, count in sorted(self.dead_lettered().items()):
            dead.add_metric([reason], float(count))
        yield dead
        lag = GaugeMetricFamily(
            "cemi_consumer_lag_messages",
            "Input messages on the broker not yet processed, per input partition "
            "(fetch high watermark minus the consumer's position, plus records buffered "
            "for the merge)",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in sorted((stats.lag if stats else {}).items()):
            lag.add_metric([topic, str(partition)], float(behind))
        yield lag
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
        watermark = GaugeMetricFamily(
            "cemi_watermark_lag_seconds",
            "Wall clock minus the partition watermark",
            labels=["partition"],
        )
        now_ms = time.time() * 1000
        for partition, runtime in sorted(self.scoring.partitions.items()):
            if runtime.state.watermark_ms is not None:
                watermark.add_metric([str(partition)], (now_ms - runtime.state.watermark_ms) / 1000)
        yield watermark
        assigned = GaugeMetricFamily(
            "cemi_partitions_assigned", "Scoring partitions this worker holds"
        )
        assigned.add_metric([], float(len(self.scoring.partitions)))
        yield assigned

    def _windows(self) -> list[WindowRecords]:
        return [
            (partition, key, rows)
            for (partition, key), rows in self.scoring.publisher.latest_records().items()
        ]

    def _scores(self) -> Iterator[Metric]:
        windows = self._windows()
        yield self.latency.family(
            "cemi_score_latency_seconds",
            "Event ingest to score publication: publish time minus the ingest time of the "
            "newest event in the window, once per window publication",
        )
        key_labels = ["level", "unit", "service", "touchpoint", "window"]
        kpi_labels = ["unit", "service", "touchpoint", "kpi", "window"]
        score = GaugeMetricFamily(
            "cemi_score", "Latest CEMI 1..5 (current day/month, rolling window)", labels=key_labels
        )
        coverage = GaugeMetricFamily(
            "cemi_coverage_ratio",
            "Share of the nominal child weight present in the score (0..1)",
            labels=key_labels,
        )
        delta_prev = GaugeMetricFamily(
            "cemi_score_delta_previous",
            "CEMI minus that of the previous window of the same kind (when known)",
            labels=key_labels,
        )
        delta_network = GaugeMetricFamily(
            "cemi_score_delta_network",
            "CEMI minus the mean across units of the same key (units: the network CEMI)",
            labels=key_labels,
        )
        points = GaugeMetricFamily("cemi_kpi_points", "KPI points 1..5", labels=kpi_labels)
        value = GaugeMetricFamily(
            "cemi_kpi_value",
            "KPI raw value (ratio, mean, NPS or rate per 1,000 subscribers)",
            labels=kpi_labels,
        )
        target_ratio = GaugeMetricFamily(
            "cemi_kpi_target_ratio",
            "KPI value against its target, by direction: value/target (higher is better) or "
            "target/value (lower is better); above 1 is better than target",
            labels=kpi_labels,
        )
        target_met = GaugeMetricFamily(
            "cemi_kpi_target_met",
            "1 when the KPI meets its target (>= for higher-is-better, <= for lower), else 0",
            labels=kpi_labels,
        )
        excluded = GaugeMetricFamily(
            "cemi_kpi_excluded",
            "1 when the KPI did not occur in the window (zero denominator: left out, its "
            "weight redistributed), else 0",
            labels=kpi_labels,
        )
        # the current window per unit and kind: the newest start
        newest: dict[tuple[str, str], tuple[int, Mapping[Any, Mapping[str, Any]]]] = {}
        for _, (unit, kind, start), rows in windows:
            if (unit, kind) not in newest or newest[(unit, kind)][0] < start:
                newest[(unit, kind)] = (start, rows)
        for (_, kind), (_, rows) in sorted(newest.items()):
            for (level, unit, service, touchpoint, kpi), row in rows.items():
                if kpi is None:
                    labels = [level, _label(unit), _label(service), _label(touchpoint), kind]
                    if row.get("score") is not None:
                        score.add_metric(labels, row["score"])
                    if row.get("coverage") is not None:
                        coverage.add_metric(labels, row["coverage"])
                    if row.get("delta_prev") is not None:
                        delta_prev.add_metric(labels, row["delta_prev"])
                    if row.get("delta_network") is not None:
                        delta_network.add_metric(labels, row["delta_network"])
                    continue
                labels = [_label(unit), _label(service), _label(touchpoint), kpi, kind]
                present = row.get("score") is not None
                excluded.add_metric(labels, 0.0 if present else 1.0)
                if present:
                    points.add_metric(labels, row["score"])
                if row.get("value") is not None:
                    value.add_metric(labels, row["value"])
                if row.get("target_ratio") is not None:
                    target_ratio.add_metric(labels, row["target_ratio"])
                if row.get("target_met") is not None:
                    target_met.add_metric(labels, 1.0 if row["target_met"] else 0.0)
        self._rolling(score)
        yield score
        yield coverage
        yield delta_prev
        yield delta_network
        yield points
        yield value
        yield target_ratio
        yield target_met
        yield excluded

    def _rolling(self, score: GaugeMetricFamily) -> None:
        """Touchpoint and service CEMI over the rolling alerting window, as last evaluated."""
        evaluator = self.scoring.evaluator
        for _, runtime in sorted(self.scoring.partitions.items()):
            for unit, unit_state in sorted(runtime.state.units.items()):
                rolling = unit_state.rolling
                if rolling is None:
                    continue
                for index, (value, _) in sorted(rolling.touchpoints.items()):
                    if value is not None:
                        _, service, touchpoint = evaluator.key_of(index)
                        score.add_metric(
                            ["touchpoint", unit, service, _label(touchpoint), "rolling"], value
                        )
                for index, value in sorted(rolling.services.items()):
                    if value is not None:
                        _, service, _ = evaluator.key_of(-1 - index)
                        score.add_metric(["service", unit, service, "", "rolling"], value)

    def _programmes(self) -> Iterator[Metric]:
        attainment = GaugeMetricFamily(
            "cemi_programme_attainment_ratio",
            "An action programme indicator's attainment in the current month: value/target "
            "(higher is better) or target/value (lower); 1 or more is on track",
            labels=["programme", "indicator", "unit"],
        )
        newest: dict[tuple[str, str, str], tuple[int, dict[str, Any]]] = {}
        for (_, (unit, kind, start)), records in self.scoring.publisher.latest_programmes().items():
            if kind != "month":
                continue
            for (programme, indicator), record in records.items():
                slot = (programme, indicator, unit)
                if slot not in newest or newest[slot][0] < start:
                    newest[slot] = (start, record)
        for slot, (_, record) in sorted(newest.items()):
            if record.get("attainment") is not None:
                attainment.add_metric(list(slot), record["attainment"])
        yield attainment

    def _alerts(self) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "cemi_alert_active",
            "1 while the alert fires; `owner`: the catalog's team or role for it; "
            "`programme`, `indicator`: for the programme_behind rule",
            labels=["unit", "service", "touchpoint", "rule", "owner", "programme", "indicator"],
        )
        evaluator = self.scoring.evaluator
        programmes = evaluator.plan.programmes if evaluator is not None else {}
        for runtime in self.scoring.partitions.values():
            for unit, unit_state in sorted(runtime.state.units.items()):
                rolling = unit_state.rolling
                for index, machine in sorted(rolling.machines.items() if rolling else ()):
                    if machine.state == "firing":
                        rule, service, touchpoint = evaluator.key_of(index)
                        owner = _label(evaluator.owner_of(index))
                        labels = [unit, service, touchpoint or "", rule, owner, "", ""]
                        active.add_metric(labels, 1.0)
                for (programme, indicator), behind in sorted(unit_state.programme_alerts.items()):
                    if behind.state == "firing":
                        owner = programmes[programme].owner
                        labels = [unit, "", "", RULE, owner, programme, indicator]
                        active.add_metric(labels, 1.0)
        yield active


_FORMATTED_TYPES: Final = {"counter": "counter", "gauge": "gauge", "histogram": "histogram"}


def _value(value: float) -> str:
    return floatToGoString(value)  # type: ignore[no-untyped-call,no-any-return]


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format (0.0.4) of the registry: the same bytes as
    `prometheus_client.generate_latest`, several times faster for the tens of thousands of
    per-KPI samples a worker holding many units exports (generate_latest validates and
    escapes every label name of every sample; the names here are fixed and valid).
    Counter, gauge and histogram families only (the collector's); anything else goes
    through generate_latest."""
    families = list(registry.collect())
    if any(m.type not in _FORMATTED_TYPES for m in families) or any(
        s.timestamp is not None or s.exemplar is not None for m in families for s in m.samples
    ):
        return generate_latest(registry)
    out: list[str] = []
    escaped: dict[str, str] = {}
    for metric in families:
        name = f"{metric.name}_total" if metric.type == "counter" else metric.name
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {metric.type}\n")
        keys: tuple[str, ...] = ()
        order: list[str] = []
        for sample in metric.samples:
            labels = sample.labels
            if not labels:
                out.append(f"{sample.name} {_value(sample.value)}\n")
                continue
            if tuple(labels) != keys:
                keys = tuple(labels)
                order = sorted(keys)
            parts = []
            for key in order:
                text = labels[key]
                quoted = escaped.get(text)
                if quoted is None:
                    quoted = escaped[text] = (
                        text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
                    )
                parts.append(f'{key}="{quoted}"')
            out.append(f"{sample.name}{{{','.join(parts)}}} {_value(sample.value)}\n")
    return "".join(out).encode()


def registry_for(collector: CemiCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
