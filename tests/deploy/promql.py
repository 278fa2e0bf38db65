"""Metric names used by the deploy files (rule and dashboard expressions), for the tests."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))

KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "atan2",
}  # fmt: skip
# series Prometheus makes itself, not the worker
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (also label_values(metric, label) queries)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # grouping labels
    text = re.sub(r"label_values\(([^,)]*),[^)]*\)", r"\1", text)  # Grafana variable query
    names = set()
    for match in re.finditer(r"(?<![\w.$:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS or re.fullmatch(r"\d+[smhdwy]", name):
            continue
        names.add(name)
    return names


def rules() -> Iterator[dict[str, Any]]:
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def rule_expressions() -> dict[str, str]:
    return {f"{r.get('record') or r.get('alert')}#{i}": r["expr"] for i, r in enumerate(rules())}


def recorded_names() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


def _walk(node: Any) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            grafana_variable = key == "query" and "label_values" in str(value)
            if isinstance(value, str) and (key == "expr" or grafana_variable):
                yield key, value
            elif key == "query" and isinstance(value, dict) and "query" in value:
                yield key, value["query"]
            else:
                yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def dashboard_expressions() -> dict[str, str]:
    found = {}
    for path in DASHBOARDS:
        for i, (_, expr) in enumerate(_walk(json.loads(path.read_text()))):
            found[f"{path.name}#{i}"] = expr
    return found


def worker_names_used() -> dict[str, set[str]]:
    """Each raw metric name (not recorded by the rules, not Prometheus' own) -> where used."""
    recorded = recorded_names()
    used: dict[str, set[str]] = {}
    everything = {**rule_expressions(), **dashboard_expressions()}
    for where, expr in everything.items():
        for name in metric_names(expr):
            if name in recorded or name in PROMETHEUS_SERIES:
                continue
            used.setdefault(name, set()).add(where)
    return used


def exported_name(name: str) -> str:
    """The family a sample name belongs to (histogram series -> the histogram)."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
