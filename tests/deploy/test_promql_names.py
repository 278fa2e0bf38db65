"""The metric-name extractor the deploy tests rely on."""

from __future__ import annotations

from tests.deploy.promql import (
    DASHBOARDS,
    RULE_FILES,
    dashboard_expressions,
    metric_names,
    recorded_names,
    rule_expressions,
    worker_names_used,
)


def test_metric_names_skip_functions_labels_ranges_and_keywords() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (job, le) (rate(cemi_score_latency_seconds_bucket"
        '{job="cemi-worker", unit=~"$unit"}[5m]))) > 30 and on (job, instance) '
        "sum without (reason) (increase(cemi_events_consumed_total[10m])) == bool 0"
    )
    assert metric_names(expr) == {"cemi_score_latency_seconds_bucket", "cemi_events_consumed_total"}


def test_metric_names_find_recorded_series_and_grafana_label_values() -> None:
    assert metric_names('window:cemi_network_score:avg{window="day"} offset 1h') == {
        "window:cemi_network_score:avg"
    }
    assert metric_names('label_values(cemi_score{level="unit"}, unit)') == {"cemi_score"}
    assert metric_names("$__rate_interval") == set()


def test_deploy_files_use_worker_metrics_and_recorded_series() -> None:
    assert RULE_FILES and DASHBOARDS
    assert len(rule_expressions()) >= 20
    assert len(dashboard_expressions()) >= 10
    assert "window:cemi_network_score:avg" in recorded_names()
    used = worker_names_used()
    assert {"cemi_score", "cemi_alert_active", "cemi_consumer_lag_messages"} <= set(used)
