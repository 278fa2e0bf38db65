"""The CEMI Grafana dashboards as code (grafana-foundation-sdk), written to dashboards/*.json.

    python deploy/grafana/generate.py          # rewrite the committed JSON
    python deploy/grafana/generate.py --check  # exit 1 if the JSON is not what this generates

tests/deploy/test_grafana.py checks that the committed JSON is what this code generates.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders.dashboard import (
    CustomVariable,
    Dashboard,
    DashboardLink,
    DatasourceVariable,
    QueryVariable,
    Row,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueTextMode,
    TableCellDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

# Provisioned file dashboards are the classic JSON model; the SDK steers new code to its v2
# schema, which Grafana only reads through its newer API.
warnings.filterwarnings("ignore", "Prefer using dashboardv2", DeprecationWarning)

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
REFRESH = "30s"

# The quality classes of SPEC section 3, as colour steps on the 1..5 scale.
CLASS_STEPS = [
    Threshold(value=None, color="red"),  # poor: 1 <= s < 2
    Threshold(value=2.0, color="orange"),  # average
    Threshold(value=3.0, color="yellow"),  # fair
    Threshold(value=3.5, color="green"),  # good
    Threshold(value=4.5, color="dark-green"),  # excellent
]


def classes() -> ThresholdsConfig:
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(CLASS_STEPS)


def steps(*pairs: tuple[float | None, str]) -> ThresholdsConfig:
    return (
        ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=v, color=c) for v, c in pairs])
    )


def query(
    expr: str, legend: str = "", ref: str = "A", instant: bool = False, fmt: bool = False
) -> Dataquery:
    q = Dataquery().expr(expr).ref_id(ref)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant()
    if fmt:
        q = q.format(PromQueryFormat.TABLE)
    return q


def variables(board: Dashboard, *names: str) -> Dashboard:
    board = board.with_variable(
        DatasourceVariable("datasource").label("Data source").type("prometheus")
    )
    board = board.with_variable(
        CustomVariable("window")
        .label("Window")
        .values("day,month,quarter,year")
        .current(VariableOption(text="day", value="day", selected=True))
    )
    if "unit" in names:
        board = board.with_variable(
            QueryVariable("unit")
            .label("Unit")
            .datasource(DATASOURCE)
            .query('label_values(cemi_score{level="unit"}, unit)')
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
        )
    if "service" in names:
        board = board.with_variable(
            QueryVariable("service")
            .label("Service")
            .datasource(DATASOURCE)
            .query('label_values(cemi_score{level="service",unit="$unit"}, service)')
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
        )
    return board


def ts(title: str, *targets: Dataquery, unit: str = "none", w: int = 12, h: int = 8) -> Any:
    panel = timeseries.Panel().title(title).datasource(DATASOURCE).unit(unit).span(w).height(h)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def score_ts(title: str, *targets: Dataquery, w: int = 12) -> Any:
    return ts(title, *targets, w=w).min(1).max(5).thresholds(classes())


def big(title: str, target: Dataquery, w: int = 6, h: int = 5) -> Any:
    return stat.Panel().title(title).datasource(DATASOURCE).with_target(target).span(w).height(h)


def score_stat(title: str, target: Dataquery, w: int = 6) -> Any:
    return (
        big(title, target, w)
        .min(1)
        .max(5)
        .decimals(2)
        .thresholds(classes())
        .color_mode(BigValueColorMode.BACKGROUND)
    )


def grid(title: str, *targets: Dataquery, transformations: list[Any], w: int = 24) -> Any:
    panel = (
        table.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .span(w)
        .height(10)
        .transformations(transformations)
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def sorted_grid(
    title: str,
    expr: str,
    value: str,
    thresholds: ThresholdsConfig,
    hidden: tuple[str, ...] = (),
) -> Any:
    """The series of `expr` now, one row each, lowest `value` first, coloured by it."""
    excluded = dict.fromkeys(("Time", "__name__", "job", "instance", *hidden), True)
    return (
        grid(
            title,
            query(expr, instant=True, fmt=True),
            transformations=[
                t("organize", {"excludeByName": excluded, "renameByName": {"Value": value}}),
                t("sortBy", {"sort": [{"field": value}]}),
            ],
        )
        .decimals(2)
        .display_mode(TableCellDisplayMode.COLOR_BACKGROUND)
        .thresholds(thresholds)
    )


def colour_by_class() -> list[DynamicConfigValue]:
    return [
        DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
        DynamicConfigValue(id_val="thresholds", value=classes().build()),
    ]


def t(id_val: str, options: dict[str, Any]) -> DataTransformerConfig:
    return DataTransformerConfig(id_val=id_val, options=options)


def links() -> list[Any]:
    return [
        DashboardLink("CEMI dashboards")
        .type(DashboardLinkType.DASHBOARDS)
        .tags(["cemi"])
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True)
    ]


def base(uid: str, title: str, description: str) -> Dashboard:
    return (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["cemi"])
        .refresh(REFRESH)
        .time("now-6h", "now")
        .timezone("browser")
        .links(links())
    )


# --- dashboards ------------------------------------------------------------------------------


def network_overview() -> Dashboard:
    board = variables(
        base(
            "cemi-network",
            "CEMI / Network overview",
            "Network CEMI, units by class, units x services (cell colour = quality class)",
        )
    )
    return (
        board.with_row(Row("Network"))
        .with_panel(
            score_stat("Network CEMI", query('window:cemi_network_score:avg{window="$window"}'))
        )
        .with_panel(
            bargauge.Panel()
            .title("Units per class")
            .datasource(DATASOURCE)
            .with_target(
                query('window_class:cemi_units:count{window="$window"}', "{{class}}", instant=True)
            )
            .span(12)
            .height(5)
        )
        .with_panel(
            big("Alerts firing", query("sum(cemi_alert_active)"))
            .thresholds(steps((None, "green"), (1, "red")))
            .color_mode(BigValueColorMode.BACKGROUND)
        )
        .with_panel(
            score_ts(
                "Network CEMI over time",
                query('window:cemi_network_score:avg{window="day"}', "day", "A"),
                query('window:cemi_network_score:avg{window="month"}', "month", "B"),
            )
        )
        .with_panel(
            score_ts(
                "Service CEMI, mean over units",
                query('service_window:cemi_service_score:avg{window="$window"}', "{{service}}"),
            )
        )
        .with_row(Row("Units x services"))
        .with_panel(
            grid(
                "Unit x service CEMI (colour = class)",
                query('cemi_score{level="service",window="$window"}', instant=True, fmt=True),
                transformations=[
                    t(
                        "groupingToMatrix",
                        {"columnField": "service", "rowField": "unit", "valueField": "Value"},
                    ),
                    t("sortBy", {"sort": [{"field": "unit\\service"}]}),
                ],
            )
            .display_mode(TableCellDisplayMode.COLOR_BACKGROUND)
            .decimals(2)
            .min(1)
            .max(5)
            .thresholds(classes())
        )
        .with_panel(
            grid(
                "Units (unit CEMI, coverage, delta vs previous window and vs network)",
                query('cemi_score{level="unit",window="$window"}', ref="A", instant=True, fmt=True),
                query(
                    'cemi_coverage_ratio{level="unit",window="$window"}',
                    ref="B",
                    instant=True,
                    fmt=True,
                ),
                query(
                    'cemi_score_delta_previous{level="unit",window="$window"}',
                    ref="C",
                    instant=True,
                    fmt=True,
                ),
                query(
                    'cemi_score_delta_network{level="unit",window="$window"}',
                    ref="D",
                    instant=True,
                    fmt=True,
                ),
                transformations=[
                    t("merge", {}),
                    t(
                        "organize",
                        {
                            "excludeByName": {
                                "Time": True,
                                "__name__": True,
                                "job": True,
                                "instance": True,
                                "level": True,
                                "service": True,
                                "touchpoint": True,
                                "window": True,
                            },
                            "renameByName": {
                                "Value #A": "CEMI",
                                "Value #B": "coverage",
                                "Value #C": "vs previous",
                                "Value #D": "vs network",
                            },
                        },
                    ),
                    t("sortBy", {"sort": [{"field": "CEMI"}]}),
                ],
            ).decimals(2)
        )
        .with_panel(
            score_ts(
                "Unit CEMI over time",
                query('cemi_score{level="unit",window="$window"}', "{{unit}}"),
                w=24,
            )
        )
    )


def unit_drilldown() -> Dashboard:
    board = variables(
        base(
            "cemi-unit",
            "CEMI / Unit drill-down",
            "One unit: service -> touchpoint -> KPI, with deltas and exclusions",
        ),
        "unit",
        "service",
    )
    key = 'unit="$unit",window="$window"'
    svc = 'unit="$unit",service="$service",window="$window"'

    def tree(title: str, level: str, selector: str, fields: list[str]) -> Any:
        exprs = [
            f'cemi_score{{level="{level}",{selector}}}',
            f'cemi_coverage_ratio{{level="{level}",{selector}}}',
            f'cemi_score_delta_previous{{level="{level}",{selector}}}',
            f'cemi_score_delta_network{{level="{level}",{selector}}}',
        ]
        refs = "ABCD"
        hidden = {"Time", "__name__", "job", "instance", "level", "unit", "window"}
        hidden |= {"service", "touchpoint"} - set(fields)
        return (
            grid(
                title,
                *(
                    query(e, ref=r, instant=True, fmt=True)
                    for e, r in zip(exprs, refs, strict=True)
                ),
                transformations=[
                    t("merge", {}),
                    t(
                        "organize",
                        {
                            "excludeByName": {name: True for name in sorted(hidden)},
                            "renameByName": {
                                "Value #A": "CEMI",
                                "Value #B": "coverage",
                                "Value #C": "vs previous",
                                "Value #D": "vs network",
                            },
                        },
                    ),
                    t("sortBy", {"sort": [{"field": "CEMI"}]}),
                ],
                w=12,
            )
            .decimals(2)
            .override_by_name(
                "CEMI",
                colour_by_class(),
            )
        )

    return (
        board.with_row(Row("Unit"))
        .with_panel(score_stat("Unit CEMI", query(f'cemi_score{{level="unit",{key}}}')))
        .with_panel(
            big("vs previous window", query(f'cemi_score_delta_previous{{level="unit",{key}}}'))
            .decimals(2)
            .thresholds(steps((None, "red"), (0, "green")))
        )
        .with_panel(
            big("vs network", query(f'cemi_score_delta_network{{level="unit",{key}}}'))
            .decimals(2)
            .thresholds(steps((None, "red"), (0, "green")))
        )
        .with_panel(
            big("Alerts firing", query('sum(cemi_alert_active{unit="$unit"}) or vector(0)'))
            .thresholds(steps((None, "green"), (1, "red")))
            .color_mode(BigValueColorMode.BACKGROUND)
        )
        .with_panel(tree("Services", "service", key, ["service"]))
        .with_panel(
            score_ts(
                "Service CEMI over time",
                query(f'cemi_score{{level="service",{key}}}', "{{service}}"),
            )
        )
        .with_row(Row("Service $service"))
        .with_panel(tree("Touchpoints of $service", "touchpoint", svc, ["touchpoint"]))
        .with_panel(
            score_ts(
                "Touchpoints of $service, rolling window (alerting)",
                query(
                    'cemi_score{level="touchpoint",unit="$unit",service="$service",'
                    'window="rolling"}',
                    "{{touchpoint}}",
                ),
            )
        )
        .with_panel(
            grid(
                "KPIs of $service (points, raw value, excluded = did not occur)",
                query(f"cemi_kpi_points{{{svc}}}", ref="A", instant=True, fmt=True),
                query(f"cemi_kpi_value{{{svc}}}", ref="B", instant=True, fmt=True),
                query(f"cemi_kpi_excluded{{{svc}}}", ref="C", instant=True, fmt=True),
                transformations=[
                    t("merge", {}),
                    t(
                        "organize",
                        {
                            "excludeByName": {
                                "Time": True,
                                "__name__": True,
                                "job": True,
                                "instance": True,
                                "unit": True,
                                "service": True,
                                "window": True,
                            },
                            "renameByName": {
                                "Value #A": "points",
                                "Value #B": "value",
                                "Value #C": "excluded",
                            },
                        },
                    ),
                    t("sortBy", {"sort": [{"field": "touchpoint"}]}),
                ],
            )
            .decimals(3)
            .override_by_name(
                "points",
                colour_by_class(),
            )
        )
    )


def alerts() -> Dashboard:
    board = variables(
        base("cemi-alerts", "CEMI / Alerts", "Firing CEMI alerts (the worker's and Prometheus')")
    )
    return (
        board.with_row(Row("Firing"))
        .with_panel(
            big("Service alerts", query('sum(cemi_alert_active{rule="service"}) or vector(0)'))
            .thresholds(steps((None, "green"), (1, "red")))
            .color_mode(BigValueColorMode.BACKGROUND)
        )
        .with_panel(
            big(
                "Touchpoint alerts",
                query('sum(cemi_alert_active{rule="touchpoint"}) or vector(0)'),
            )
            .thresholds(steps((None, "green"), (1, "orange")))
            .color_mode(BigValueColorMode.BACKGROUND)
        )
        .with_panel(
            big(
                "Pipeline alerts (Prometheus)",
                query('count(ALERTS{alertstate="firing",component="pipeline"}) or vector(0)'),
            )
            .thresholds(steps((None, "green"), (1, "red")))
            .color_mode(BigValueColorMode.BACKGROUND)
        )
        .with_panel(
            big("Units alerting", query("count(count by (unit) (cemi_alert_active)) or vector(0)"))
        )
        .with_panel(
            sorted_grid(
                "Firing alerts with their rolling-window CEMI",
                'cemi_score{window="rolling"} and on (unit, service, touchpoint) cemi_alert_active',
                "rolling CEMI",
                classes(),
                hidden=("window",),
            )
        )
        .with_panel(
            ts(
                "Alerts firing per service",
                query("sum by (service) (cemi_alert_active)", "{{service}}"),
                w=12,
            )
        )
        .with_panel(
            ts(
                "Prometheus alerts",
                query(
                    'sum by (alertname) (ALERTS{alertstate="firing",alertname=~"Cemi.*"})',
                    "{{alertname}}",
                ),
                w=12,
            )
        )
    )


def programmes() -> Dashboard:
    board = variables(
        base(
            "cemi-programmes",
            "CEMI / Action programmes",
            "Action programmes' indicators against their phased targets (current month)",
        )
    )
    on_track = steps((None, "red"), (0.8, "orange"), (1, "green"))
    return (
        board.with_row(Row("Progress"))
        .with_panel(
            big(
                "Indicators on track",
                query("count(cemi_programme_attainment_ratio >= 1) or vector(0)"),
            )
            .thresholds(steps((None, "blue")))
            .color_mode(BigValueColorMode.BACKGROUND)
        )
        .with_panel(
            big(
                "Indicators behind",
                query("count(cemi_programme_attainment_ratio < 1) or vector(0)"),
            )
            .thresholds(steps((None, "green"), (1, "orange")))
            .color_mode(BigValueColorMode.BACKGROUND)
        )
        .with_panel(
            big(
                "Programmes behind (alerts)",
                query('sum(cemi_alert_active{rule="programme_behind"}) or vector(0)'),
            )
            .thresholds(steps((None, "green"), (1, "red")))
            .color_mode(BigValueColorMode.BACKGROUND)
        )
        .with_panel(
            sorted_grid(
                "Attainment per programme, indicator and unit (1 = on target)",
                "cemi_programme_attainment_ratio",
                "attainment",
                on_track,
            )
        )
        .with_panel(
            ts(
                "Attainment over time",
                query(
                    "cemi_programme_attainment_ratio",
                    "{{programme}} {{indicator}} {{unit}}",
                ),
                w=24,
            ).thresholds(on_track)
        )
    )


def pipeline_health() -> Dashboard:
    board = variables(
        base(
            "cemi-pipeline",
            "CEMI / Pipeline health",
            "Throughput, dead letters, latency, lags and workers",
        )
    )
    rate = "$__rate_interval"
    return (
        board.with_row(Row("Workers"))
        .with_panel(
            big("Workers up", query('sum(up{job="cemi-worker"})'))
            .thresholds(steps((None, "red"), (1, "green")))
            .color_mode(BigValueColorMode.BACKGROUND)
        )
        .with_panel(big("Partitions held", query("sum(cemi_partitions_assigned)")))
        .with_panel(
            big(
                "Catalog version", query("cemi_catalog_info", "{{version}}", instant=True)
            ).text_mode(BigValueTextMode.NAME)
        )
        .with_panel(
            big(
                "Score latency p95",
                query("job:cemi_score_latency_seconds:p95_5m"),
            )
            .unit("s")
            .thresholds(steps((None, "green"), (10, "orange"), (30, "red")))
        )
        .with_row(Row("Throughput"))
        .with_panel(
            ts(
                "Events per second",
                query("job:cemi_events_consumed:rate1m", "consumed", "A"),
                query("job:cemi_events_scored:rate1m", "scored", "B"),
                query(f"sum(rate(cemi_events_duplicate_total[{rate}]))", "duplicate", "C"),
                query(f"sum(rate(cemi_events_late_total[{rate}]))", "late", "D"),
                query(f"sum(rate(cemi_events_replayed_total[{rate}]))", "replayed", "E"),
                unit="ops",
            )
        )
        .with_panel(
            ts(
                "Dead letters per second, by reason",
                query("job_reason:cemi_events_dead_lettered:rate5m", "{{reason}}", "A"),
                unit="ops",
            )
        )
        .with_panel(
            ts(
                "Dead-letter ratio",
                query("job:cemi_events_dead_lettered:ratio_rate5m", "dead-lettered"),
                unit="percentunit",
            )
        )
        .with_panel(
            ts(
                "Records published per second",
                query(f"sum(rate(cemi_score_records_published_total[{rate}]))", "scores", "A"),
                query(f"sum(rate(cemi_alert_records_published_total[{rate}]))", "alerts", "B"),
                unit="ops",
            )
        )
        .with_row(Row("Latency and lag"))
        .with_panel(
            ts(
                "Event to score latency",
                *(
                    query(
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(cemi_score_latency_seconds_bucket[{rate}])))",
                        f"p{int(q * 100)}",
                        ref,
                    )
                    for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
                ),
                unit="s",
            )
        )
        .with_panel(
            ts(
                "Consumer lag (input messages waiting), per partition",
                query("cemi_consumer_lag_messages", "{{topic}}/{{partition}}"),
                unit="short",
            )
        )
        .with_panel(
            ts(
                "Watermark lag, per scoring partition",
                query("cemi_watermark_lag_seconds", "{{instance}} p{{partition}}"),
                unit="s",
            )
        )
        .with_panel(
            ts(
                "KPIs excluded (zero denominator), per service",
                query('service_window:cemi_kpi_excluded:sum{window="$window"}', "{{service}}"),
                unit="short",
            )
        )
    )


DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "cemi-network-overview.json": network_overview,
    "cemi-unit-drilldown.json": unit_drilldown,
    "cemi-alerts.json": alerts,
    "cemi-pipeline-health.json": pipeline_health,
    "cemi-programmes.json": programmes,
}


def render(build: Callable[[], Dashboard]) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    for number, panel in enumerate(model.get("panels", []), start=1):
        panel["id"] = number  # Grafana wants unique panel ids
    return json.dumps(model, indent=2, sort_keys=True) + "\n"


def generated() -> dict[str, str]:
    return {name: render(build) for name, build in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, text in generated().items():
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"not what deploy/grafana/generate.py generates: {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
