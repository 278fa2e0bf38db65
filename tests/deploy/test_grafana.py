"""The Grafana dashboards: generated from code, committed as JSON, provisioned."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import yaml

from tests.deploy.promql import DASHBOARDS, DEPLOY, dashboard_expressions
from tests.deploy.tools import require, run

GRAFANA = DEPLOY / "grafana"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cemi_grafana_generate", GRAFANA / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_committed_dashboards_are_what_the_generator_generates() -> None:
    generated = generator().generated()
    committed = {p.name: p.read_text() for p in DASHBOARDS}
    assert set(committed) == set(generated), "run: python deploy/grafana/generate.py"
    for name, text in generated.items():
        assert committed[name] == text, f"{name} is stale: run python deploy/grafana/generate.py"


def test_generator_check_mode_fails_on_a_stale_dashboard(tmp_path: Path) -> None:
    module = generator()
    module.OUT = tmp_path
    assert module.main([]) == 0
    assert module.main(["--check"]) == 0
    stale = tmp_path / "cemi-alerts.json"
    stale.write_text(stale.read_text().replace("Alerts firing", "Alerts"))
    assert module.main(["--check"]) == 1


def test_dashboards_have_unique_uids_panel_ids_and_the_prometheus_datasource() -> None:
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["uid"] not in uids
        uids.add(board["uid"])
        assert "cemi" in board["tags"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
                assert panel["targets"], f"{path.name}: {panel['title']} has no query"
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["query"] == "prometheus"
    assert uids == {"cemi-network", "cemi-unit", "cemi-alerts", "cemi-pipeline", "cemi-programmes"}


def grafana_free(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced by plain values."""
    values = {"unit": "HPG", "service": "mobile", "window": "day", "__rate_interval": "1m"}
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = require("promtool")
    exprs = [grafana_free(e) for e in dashboard_expressions().values() if "label_values" not in e]
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = run(promtool, "check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in checked.stdout
    # and the check does catch a broken query
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "dashboard:broken", "expr": "sum(rate(cemi_events_consumed_total[1m]"}
    ]}]}))  # fmt: skip
    assert run(promtool, "check", "rules", str(path)).returncode != 0


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    [source] = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/cemi.yml").read_text())
    [provider] = providers["providers"]
    compose = yaml.safe_load((DEPLOY.parent / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
