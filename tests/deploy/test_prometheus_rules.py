"""Prometheus config and rules, checked and unit-tested by Debian's promtool."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.deploy.promql import DEPLOY, RULE_FILES
from tests.deploy.tools import require, run

PROMETHEUS = DEPLOY / "prometheus"
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*_test.yml"))


def test_promtool_check_config_accepts_the_scrape_config_and_its_rule_files() -> None:
    checked = run(require("promtool"), "check", "config", "prometheus.yml", cwd=PROMETHEUS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 2 rule files found" in checked.stdout


def test_promtool_check_rules_accepts_every_rule_file() -> None:
    checked = run(require("promtool"), "check", "rules", *map(str, RULE_FILES))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_rule_group_has_promtool_unit_tests_and_they_pass() -> None:
    tested = set()
    for path in RULE_TESTS:
        spec = yaml.safe_load(path.read_text())
        for rule_file in spec["rule_files"]:
            tested.add((path.parent / rule_file).resolve())
    assert tested == {p.resolve() for p in RULE_FILES}
    # each rule, recording or alerting, is exercised by some test
    exercised = {
        t.get("expr", "").split("{")[0]
        for path in RULE_TESTS
        for case in yaml.safe_load(path.read_text())["tests"]
        for t in case.get("promql_expr_test", [])
    } | {
        t["alertname"]
        for path in RULE_TESTS
        for case in yaml.safe_load(path.read_text())["tests"]
        for t in case.get("alert_rule_test", [])
    }
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                name = rule.get("record") or rule["alert"]
                assert name in exercised, f"{name} ({group['name']}) has no promtool test"
    checked = run(require("promtool"), "test", "rules", *map(str, RULE_TESTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_test_rules_fails_when_a_rule_changes(tmp_path: Path) -> None:
    # the unit tests can fail: a network score that sums instead of averaging is caught
    rules = (PROMETHEUS / "rules" / "recording.yml").read_text()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "recording.yml").write_text(
        rules.replace(
            'avg by (window) (cemi_score{level="unit"})',
            'sum by (window) (cemi_score{level="unit"})',
        )
    )
    (tmp_path / "tests").mkdir()
    test = (PROMETHEUS / "tests" / "recording_test.yml").read_text()
    (tmp_path / "tests" / "recording_test.yml").write_text(test)
    checked = run(require("promtool"), "test", "rules", "tests/recording_test.yml", cwd=tmp_path)
    assert checked.returncode != 0
    assert "window:cemi_network_score:avg" in checked.stdout + checked.stderr
