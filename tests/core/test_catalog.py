from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.core.catalog import CatalogError, load_catalog, parse_catalog
from streams.core.plan import ScoringPlan

CANONICAL = """
version: "2026.11"               # stamped on every output record
timezone: Asia/Ho_Chi_Minh       # day/month windows follow this local calendar
units: {HPG: {weight: 1.0}}      # optional; unit weights for the network level, default 1
services:
  mobile:
    weight: 30                   # any positive number; weights are normalised
    target: 4.0                  # optional, at service/touchpoint/kpi level
    touchpoints:
      install:
        weight: 8
        threshold: 3.0           # optional alert threshold (used by the alerts issue)
        kpis:
          install_on_time:
            weight: 40
            kind: ratio          # ratio | mean | nps | rate
            event: install       # event type the KPI reads
            where: {status: completed}          # events counted in the denominator
            numerator: {on_time: true}          # ratio only: which of those count on top
            scale: [[0.80, 1], [0.90, 3], [0.98, 5]]
            target: 0.95
            description: "Installs completed on the promised date"
"""
KPI = "services.mobile.touchpoints.install.kpis.install_on_time"


def canonical() -> dict[str, Any]:
    return yaml.safe_load(CANONICAL)  # type: ignore[no-any-return]


def test_canonical_form_from_the_issue_is_accepted_as_is(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(CANONICAL)
    catalog = load_catalog(path)
    assert catalog.version == "2026.11"
    kpi = catalog.services["mobile"].touchpoints["install"].kpis["install_on_time"]
    assert kpi.scale == [(0.80, 1), (0.90, 3), (0.98, 5)]


def test_json_catalogs_are_read_too(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(canonical()))
    assert load_catalog(path).units["HPG"].weight == 1.0


def test_default_catalog_covers_the_journey_for_all_five_services() -> None:
    catalog = load_catalog()
    plan = ScoringPlan(catalog)
    assert set(catalog.services) == {
        "mobile",
        "fixed_broadband",
        "mytv",
        "digital_personal",
        "digital_enterprise",
    }
    assert len({tp.touchpoint for tp in plan.touchpoints}) == 16
    assert len({k.kpi for k in plan.kpis}) >= 40
    assert all(k.description for k in plan.kpis)
    assert {k.kind for k in plan.kpis} == {"ratio", "mean", "nps", "rate"}


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "where", "fragment"),
    [
        (f"{KPI}.colour", "red", f"{KPI}.colour", "unknown key"),
        (f"{KPI}.scale", [[0.9, 1], [0.8, 5]], f"{KPI}.scale", "values must increase"),
        (f"{KPI}.scale", [[0.9, 1]], f"{KPI}.scale", "at least 2 breakpoints"),
        (f"{KPI}.scale", [[0.8, 0], [0.9, 5]], f"{KPI}.scale.0", "within [1, 5]"),
        (f"{KPI}.weight", -1, f"{KPI}.weight", "greater than 0"),
        ("services.mobile.weight", 0, "services.mobile.weight", "greater than 0"),
        (f"{KPI}.event", "refund", f"{KPI}.event", "Input should be"),
        (f"{KPI}.kind", "median", f"{KPI}.kind", "Input should be"),
        (f"{KPI}.where", {"status": {"like": "x"}}, f"{KPI}.where.status.like", "operator"),
        (f"{KPI}.where", {"colour": "red"}, f"{KPI}.where.colour", "unknown field"),
        (f"{KPI}.where", {"status": "done"}, f"{KPI}.where.status", "not one of"),
        (f"{KPI}.numerator", _DELETE, f"{KPI}.numerator", "needs a numerator"),
        (f"{KPI}.field", "delay_hours", f"{KPI}.field", "only mean and nps"),
        (f"{KPI}.description", _DELETE, f"{KPI}.description", "Field required"),
        ("services.landline", None, "services.landline", "unknown service"),
        ("timezone", "Mars/Olympus", "timezone", "unknown IANA time zone"),
        ("units", {"hpg": {"weight": 1}}, "units.hpg", "unit code must match"),
        (
            "services.mobile.touchpoints.install.threshold",
            7,
            "services.mobile.touchpoints.install.threshold",
            "less than or equal to 5",
        ),
        (
            "services.mobile.touchpoints.install.kpis",
            {},
            "services.mobile.touchpoints.install.kpis",
            "at least one KPI",
        ),
        ("version", _DELETE, "version", "Field required"),
    ],
)
def test_bad_catalogs_are_refused_naming_the_field(
    path: str, value: Any, where: str, fragment: str
) -> None:
    data = canonical()
    if path == "services.landline":
        value = copy.deepcopy(data["services"]["mobile"])
    _set(data, path, value if value is _DELETE else copy.deepcopy(value))
    with pytest.raises(CatalogError) as raised:
        parse_catalog(data)
    paths = {p: m for p, m in raised.value.problems}
    assert where in paths, raised.value.problems
    assert fragment in paths[where]


def test_mean_kpi_needs_a_numeric_field() -> None:
    data = canonical()
    kpi = data["services"]["mobile"]["touchpoints"]["install"]["kpis"]["install_on_time"]
    kpi.update(kind="mean", field="status")
    del kpi["numerator"]
    with pytest.raises(CatalogError, match=rf"{KPI}.field: status is enum, not numeric"):
        parse_catalog(data)


def test_unreadable_or_unparsable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("services: [unclosed")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(bad)


def test_defaults_are_merged_into_each_service_and_null_removes() -> None:
    data = {
        "version": "d",
        "defaults": {"touchpoints": canonical()["services"]["mobile"]["touchpoints"]},
        "services": {
            "mobile": {"weight": 1, "touchpoints": {"install": {"weight": 3}}},
            "mytv": {
                "weight": 1,
                "touchpoints": {
                    "install": None,
                    "care": copy.deepcopy(
                        canonical()["services"]["mobile"]["touchpoints"]["install"]
                    ),
                },
            },
        },
    }
    catalog = parse_catalog(data)
    mobile = catalog.services["mobile"].touchpoints
    assert mobile["install"].weight == 3 and "install_on_time" in mobile["install"].kpis
    assert set(catalog.services["mytv"].touchpoints) == {"care"}


def default_data() -> dict[str, Any]:
    from importlib.resources import files

    text = files("streams.data").joinpath("default_catalog.yaml").read_text()
    return yaml.safe_load(text)  # type: ignore[no-any-return]


def problems_of(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(data)
    return caught.value.problems


def test_a_touchpoint_in_two_stages_is_refused_naming_it() -> None:
    data = default_data()
    # install is in "onboarding" by default: put it in "purchase" for mobile only
    data["services"]["mobile"]["touchpoints"]["install"] = {"stage": "purchase"}
    [(path, message)] = problems_of(data)
    assert path.endswith(".touchpoints.install.stage") and "'onboarding'" in message


def test_a_stage_in_two_phases_is_refused_naming_it() -> None:
    data = default_data()
    data["defaults"]["touchpoints"]["activate"]["phase"] = "use"  # onboarding is in "buy"
    [(path, message)] = problems_of(data)
    assert path.endswith(".phase") and "'onboarding'" in message and "'buy'" in message


def test_a_touchpoint_without_a_stage_where_the_others_have_one_is_refused() -> None:
    data = default_data()
    data["defaults"]["touchpoints"]["leave"]["stage"] = None  # removes it
    [(path, message)] = problems_of(data)
    assert path.endswith(".touchpoints.leave.stage") and message.startswith("missing")


def test_a_catalog_without_any_journey_map_is_accepted() -> None:
    assert parse_catalog(canonical()).services["mobile"].touchpoints["install"].stage is None


def test_owners_are_inherited_downward_and_alerts_carry_them() -> None:
    data = canonical()
    mobile = data["services"]["mobile"]
    mobile["owner"] = "Mobile CX team"
    kpi = mobile["touchpoints"]["install"]["kpis"]["install_on_time"]
    plan = ScoringPlan(parse_catalog(data))
    assert plan.services[0].owner == plan.touchpoints[0].owner == plan.kpis[0].owner
    mobile["touchpoints"]["install"]["owner"] = "Field installs"
    kpi["owner"] = "Scheduling desk"
    plan = ScoringPlan(parse_catalog(data))
    assert (plan.services[0].owner, plan.touchpoints[0].owner, plan.kpis[0].owner) == (
        "Mobile CX team",
        "Field installs",
        "Scheduling desk",
    )
    from streams.scoring.alerting import AlertEvaluator

    evaluator = AlertEvaluator(plan, 3_600_000, 60_000)
    assert evaluator.owner_of(0) == "Field installs"  # the touchpoint's alerts
    assert evaluator.owner_of(-1) == "Mobile CX team"  # the service rule's


def test_an_owner_with_a_control_character_is_refused() -> None:
    data = canonical()
    data["services"]["mobile"]["owner"] = "ops\nteam"
    [(path, _)] = problems_of(data)
    assert path == "services.mobile.owner"
