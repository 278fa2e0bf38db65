"""A real worker's /metrics, scraped by a real Prometheus (Debian's binary) with the repo's
rules: the names the rules and dashboards use exist, and the CEMI read back through
Prometheus' HTTP API is the worker's."""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from streams.broker import EmbeddedBroker
from streams.tools.produce import EventProducer
from streams.tools.simulate.generator import Generator
from streams.tools.tail import latest_by_key
from streams.topics import Topics
from tests.deploy.promql import (
    RULE_FILES,
    dashboard_expressions,
    exported_name,
    worker_names_used,
)
from tests.deploy.test_grafana import grafana_free
from tests.deploy.tools import Server, require

pytestmark = pytest.mark.broker

UNITS = ("HPG", "QBH", "HNI")


def scrape(port: int) -> dict[str, Any]:
    """family name -> family (counters also under their `_total` sample name)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family
        if family.type == "counter":
            families[f"{family.name}_total"] = family
    return families


def samples(families: dict[str, Any], name: str, **labels: str) -> list[Any]:
    family = families.get(name) or families.get(exported_name(name))
    if family is None:
        return []
    return [
        s
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


class Live:
    """One scorer worker on the embedded broker that has scored a few minutes of events."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.worker = stream.workers[0]

    def metrics(self) -> dict[str, Any]:
        return scrape(self.worker.port)

    def unit_scores(self, families: dict[str, Any] | None = None) -> dict[str, float]:
        families = families or self.metrics()
        return {
            s.labels["unit"]: s.value
            for s in samples(families, "cemi_score", level="unit", window="day")
        }


@pytest.fixture(scope="module")
def live(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    from conftest import Stream  # tests/integration/conftest.py (a module, not a package)

    # sources idle for a second stop holding the watermark: the rolling window is evaluated
    stream = Stream(broker, tmp_path_factory.mktemp("prometheus"), idle_advance_ms="1000")
    try:
        stream.worker()
        now = int(time.time() * 1000)
        # the last ten minutes, live: current day and rolling windows
        events = list(
            Generator(units=UNITS, start_ms=now - 10 * 60_000, span_ms=9 * 60_000, seed=11).events(
                3000
            )
        )

        async def send() -> int:
            async with EventProducer(stream.settings, stream.bootstrap, "mixed") as producer:
                return await producer.send_all(events)

        sent = asyncio.run(send())
        stream.wait_for(
            lambda: stream.totals()["consumed"] == sent and stream.totals()["scored"] > 0,
            what=f"{sent} events consumed",
        )
        live = Live(stream)
        previous: list[dict[str, float]] = [{}]
        previous_rolling: list[dict[str, float]] = [{}]

        def settled() -> bool:
            # every unit scored, the same scores on two scrapes half a second apart, and the
            # rolling window evaluated (a touchpoint score per unit, no longer moving)
            families = live.metrics()
            scores = live.unit_scores(families)
            same = len(scores) == len(UNITS) and scores == previous[0]
            previous[0] = scores
            rolling = {
                s.labels["unit"]: s.value
                for s in samples(families, "cemi_score", level="touchpoint", window="rolling")
            }
            same = same and len(rolling) == len(UNITS) and rolling == previous_rolling[0]
            previous_rolling[0] = rolling
            state[0] = f"unit scores {scores}, rolling touchpoint scores of {sorted(rolling)}"
            return same

        state = [""]
        try:
            stream.wait_for(settled, timeout=150, what="settled unit scores on /metrics")
        except AssertionError as error:
            raise AssertionError(f"last seen: {state[0]}\n{error}") from None
        yield live
    finally:
        stream.close()


def test_every_metric_in_the_rules_and_dashboards_is_exported_by_a_worker(live: Live) -> None:
    exported = live.metrics()
    used = worker_names_used()
    assert len(used) >= 10
    missing = {
        name: sorted(where)
        for name, where in used.items()
        if name not in exported and exported_name(name) not in exported
    }
    assert not missing, f"used in deploy/ but not exported by the worker: {missing}"


def test_worker_exports_kpi_coverage_latency_and_consumer_lag_after_scoring(live: Live) -> None:
    families = live.metrics()
    points = samples(families, "cemi_kpi_points", unit="HPG", window="day")
    assert points and all(1 <= s.value <= 5 for s in points)
    assert samples(families, "cemi_kpi_value", unit="HPG", window="day")
    excluded = samples(families, "cemi_kpi_excluded", unit="HPG", window="day")
    assert {s.value for s in excluded} <= {0.0, 1.0}
    # every KPI row is present or excluded, never both
    present = {s.labels["kpi"] for s in points}
    assert present == {s.labels["kpi"] for s in excluded if s.value == 0.0}
    coverage = samples(families, "cemi_coverage_ratio", level="unit", unit="HPG", window="day")
    assert len(coverage) == 1 and 0 < coverage[0].value <= 1
    assert samples(families, "cemi_score", level="touchpoint", unit="HPG", window="rolling")
    count = samples(families, "cemi_score_latency_seconds_count")
    total = samples(families, "cemi_score_latency_seconds_sum")
    assert count[0].value >= 1 and 0 <= total[0].value / count[0].value < 120
    inputs = set(Topics(live.stream.settings).inputs)
    lag = samples(families, "cemi_consumer_lag_messages")
    assert {s.labels["topic"] for s in lag} == inputs
    assert all(s.value == 0 for s in lag), "everything sent was consumed"
    version = samples(families, "cemi_catalog_info")
    assert len(version) == 1 and version[0].labels["version"]


def test_worker_metrics_follow_prometheus_naming_per_promtool_check_metrics(live: Live) -> None:
    promtool = require("promtool")
    with urllib.request.urlopen(f"http://127.0.0.1:{live.worker.port}/metrics", timeout=5) as r:
        text = r.read()
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # and the lint does catch a bad name
    bad = b"# HELP cemi_lag_ms lag\n# TYPE cemi_lag_ms gauge\ncemi_lag_ms 1\n"
    assert subprocess.run([promtool, "check", "metrics"], input=bad, timeout=60).returncode != 0


class Prometheus:
    """A real Prometheus scraping the live worker every second, with the repository's rules
    (their groups re-timed to evaluate every second)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def query(self, expr: str) -> list[dict[str, Any]]:
        reply = self.server.get("/api/v1/query", query=expr)
        assert reply["status"] == "success", reply
        return reply["data"]["result"]  # type: ignore[no-any-return]

    def rules(self) -> list[dict[str, Any]]:
        groups = self.server.get("/api/v1/rules")["data"]["groups"]
        return [r for g in groups for r in g["rules"]]


HPG_DAY = 'cemi_score{job="cemi-worker",level="unit",unit="HPG",window="day"}'
NETWORK_DAY = 'window:cemi_network_score:avg{window="day"}'


@pytest.fixture(scope="module")
def prometheus(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    require("prometheus")
    tmp_path = tmp_path_factory.mktemp("prometheus-server")
    rule_files = []
    for path in RULE_FILES:
        rules = yaml.safe_load(path.read_text())
        for group in rules["groups"]:
            group["interval"] = "1s"
        rule_files.append(tmp_path / path.name)
        rule_files[-1].write_text(yaml.safe_dump(rules))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": "cemi-worker",
                "static_configs": [{"targets": [f"127.0.0.1:{live.worker.port}"]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    server = Server.prometheus(tmp_path / "prometheus.yml", tmp_path / "data")
    try:
        server.wait_ready()
        prometheus = Prometheus(server)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            prometheus.query(HPG_DAY)
            and prometheus.query(NETWORK_DAY)
            and all(r["health"] != "unknown" for r in prometheus.rules())
        ):
            time.sleep(0.5)
        time.sleep(1.5)  # one more scrape and rule evaluation of the settled scores
        yield prometheus
    finally:
        server.stop()


def test_unit_cemi_through_a_real_prometheus_equals_the_workers_metrics_api_and_topic(
    live: Live, prometheus: Prometheus
) -> None:
    assert prometheus.query('up{job="cemi-worker"}')[0]["value"][1] == "1"
    worker_scores = live.unit_scores()
    [result] = prometheus.query(HPG_DAY)
    assert float(result["value"][1]) == worker_scores["HPG"]

    # the worker's HTTP API (fed from the scores topic) says the same
    def api_score() -> Any:
        reply = live.worker.get("/api/v1/scores?level=unit&unit=HPG&window=day")
        return [r["score"] for r in reply["scores"]]

    live.stream.wait_for(
        lambda: api_score() == [worker_scores["HPG"]], timeout=30, what="the API's score"
    )
    # and so does the scores topic
    topic = Topics(live.stream.settings).output("scores")
    latest = asyncio.run(latest_by_key(live.stream.bootstrap, topic, idle_exit_s=2))
    [record] = [
        r for r in latest.values() if (r["level"], r["unit"], r["window"]) == ("unit", "HPG", "day")
    ]
    assert record["score"] == worker_scores["HPG"]


def test_network_recording_rule_is_the_mean_of_the_unit_cemis_and_classes_add_up(
    live: Live, prometheus: Prometheus
) -> None:
    worker_scores = live.unit_scores()
    [mean] = prometheus.query(NETWORK_DAY)
    expected = sum(worker_scores.values()) / len(worker_scores)
    assert float(mean["value"][1]) == pytest.approx(expected, abs=1e-12)
    classes = prometheus.query('window_class:cemi_units:count{window="day"}')
    assert sum(float(c["value"][1]) for c in classes) == len(UNITS)


def test_every_repository_rule_evaluates_without_error_on_a_workers_series(
    prometheus: Prometheus,
) -> None:
    evaluated = prometheus.rules()
    assert len(evaluated) == sum(
        len(g["rules"]) for f in RULE_FILES for g in yaml.safe_load(f.read_text())["groups"]
    )
    broken = [
        (r["name"], r["health"], r.get("lastError")) for r in evaluated if r["health"] != "ok"
    ]
    assert not broken, broken


def test_every_dashboard_query_runs_and_the_unit_drilldown_has_data(
    prometheus: Prometheus,
) -> None:
    panels = {w: e for w, e in dashboard_expressions().items() if "label_values" not in e}
    for expr in panels.values():
        prometheus.query(grafana_free(expr))  # asserts status success
    drilldown = [e for w, e in panels.items() if w.startswith("cemi-unit-drilldown")]
    # (no alert fires, and yesterday's window is not in the input: no delta_previous)
    optional = ("alert", "delta_previous")
    empty = [
        e
        for e in drilldown
        if not any(o in e for o in optional) and not prometheus.query(grafana_free(e))
    ]
    assert not empty, f"drill-down queries without data for HPG/mobile/day: {empty}"
