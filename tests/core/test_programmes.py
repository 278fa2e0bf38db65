"""Action programmes: the catalog's rules, the target in force, attainment both ways, and the
effect on the KPIs a programme improves (hand-worked)."""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
import pytest
import yaml
from pytest import approx

from streams.batch import Replay
from streams.core.catalog import CatalogError, load_catalog, parse_catalog
from streams.core.plan import ScoringPlan
from streams.core.programmes import (
    IndicatorDef,
    ProgrammeValues,
    attainment,
    compile_programmes,
    target_in_force,
)
from tests.factories import event, local_ms

TRAINED = IndicatorDef(
    "technicians_trained_share",
    lower_is_better=False,
    phases=((date(2026, 12, 31), 0.5), (date(2027, 3, 31), 0.95)),
)


def test_the_target_in_force_is_the_next_phase_due_on_or_after_the_windows_last_day() -> None:
    assert target_in_force(TRAINED, date(2026, 11, 30)) == 0.5  # November: the December phase
    assert target_in_force(TRAINED, date(2026, 12, 31)) == 0.5  # due that very day
    assert target_in_force(TRAINED, date(2027, 1, 1)) == 0.95  # the next phase
    assert target_in_force(TRAINED, date(2027, 6, 30)) == 0.95  # past the last: the last


def test_attainment_reads_value_over_target_or_target_over_value_by_direction() -> None:
    assert attainment(False, 0.4, 0.5) == approx(0.8)  # 40 % trained against 50 %: behind
    assert attainment(True, 150.0, 120.0) == approx(0.8)  # 150 open orders against 120
    assert attainment(True, 100.0, 120.0) == approx(1.2)  # fewer than the target: ahead
    assert attainment(False, None, 0.5) is None
    assert attainment(True, 0.0, 120.0) is None  # no divisor
    assert attainment(False, 0.3, 0.0) is None


def test_the_latest_value_at_or_before_a_windows_end_counts() -> None:
    values = ProgrammeValues()
    values.add("p", "i", 100, 0.1)
    values.add("p", "i", 200, 0.3)
    assert values.at("p", "i", 100) is None  # ends before the first snapshot
    assert values.at("p", "i", 101) == 0.1
    assert values.at("p", "i", 201) == 0.3
    values.prune(150)  # the snapshot at 100 still counts for a window ending at 150-200
    assert values.at("p", "i", 160) == 0.1


def catalog_with(programme: dict[str, Any]) -> dict[str, Any]:
    from importlib.resources import files

    data = yaml.safe_load(files("streams.data").joinpath("default_catalog.yaml").read_text())
    data["programmes"] = {"p1": programme}
    return data  # type: ignore[no-any-return]


GOOD = {
    "name": "Recover installs",
    "owner": "HPG technical centre",
    "units": ["HPG"],
    "start": "2026-11-01",
    "end": "2027-03-31",
    "improves": [{"service": "fixed_broadband", "touchpoint": "install", "kpi": "install_on_time"}],
    "indicators": {
        "trained": {
            "description": "trained technicians",
            "direction": "higher",
            "phases": [{"due": "2026-12-31", "target": 0.5}],
        }
    },
}


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (
            {"improves": [{"service": "mobile", "touchpoint": "install", "kpi": "nope"}]},
            "programmes.p1.improves.0.kpi",
        ),
        (
            {"improves": [{"service": "mobile", "touchpoint": "nope", "kpi": "x"}]},
            "programmes.p1.improves.0.touchpoint",
        ),
        (
            {"indicators": {"trained": {**GOOD["indicators"]["trained"], "phases": []}}},  # type: ignore[index]
            "programmes.p1.indicators.trained.phases",
        ),
        (
            {
                "indicators": {
                    "trained": {
                        **GOOD["indicators"]["trained"],
                        "phases": [  # type: ignore[index]
                            {"due": "2026-12-31", "target": 0.5},
                            {"due": "2026-12-01", "target": 0.9},
                        ],
                    }
                }
            },
            "programmes.p1.indicators.trained.phases.1.due",
        ),
        ({"end": "2026-10-01"}, "programmes.p1.end"),
        ({"units": ["hpg"]}, "programmes.p1.units.0"),
    ],
)
def test_an_invalid_programme_is_refused_naming_the_field(
    change: dict[str, Any], path: str
) -> None:
    with pytest.raises(CatalogError) as refused:
        parse_catalog(catalog_with({**GOOD, **change}))
    assert [p for p, _ in refused.value.problems] == [path]


def test_a_unit_the_catalog_does_not_list_is_refused_when_it_lists_units() -> None:
    data = catalog_with({**GOOD, "units": ["QBH"]})
    data["units"] = {"HPG": {"weight": 1}}
    with pytest.raises(CatalogError) as refused:
        parse_catalog(data)
    assert refused.value.problems[0][0] == "programmes.p1.units.0"


def test_programme_records_in_the_batch_hand_worked(default_plan: ScoringPlan) -> None:
    """HPG's on-time installs: 1 of 2 in October (before the start), 3 of 3 in November.
    install_on_time's scale [[0.80, 1], [0.90, 3], [0.98, 5]]: October 0.5 -> 1 point,
    November 1.0 -> 5 points: the unit moved +4. QBH: 2 of 2 both months (5 points): the
    network mean (HPG, QBH) went from 3 to 5, +2. The indicator: 0.3 trained on 20 Nov,
    target in force for November 0.5 (due 31 Dec): attainment 0.6, not on track."""
    install = {"kind": "install", "status": "completed", "service": "fixed_broadband"}
    events = [
        event("install", "2026-10-10 10:00", unit="HPG", on_time=True, **install),
        event("install", "2026-10-11 10:00", unit="HPG", on_time=False, **install),
        event("install", "2026-10-10 10:00", unit="QBH", on_time=True, **install),
        event("install", "2026-10-11 10:00", unit="QBH", on_time=True, **install),
        *[
            event("install", f"2026-11-0{d} 10:00", unit="HPG", on_time=True, **install)
            for d in (2, 3, 4)
        ],
        *[
            event("install", f"2026-11-0{d} 10:00", unit="QBH", on_time=True, **install)
            for d in (2, 3)
        ],
        {
            "type": "programme_update",
            "event_id": "pu1",
            "event_time": local_ms("2026-11-20 09:00"),
            "unit": "HPG",
            "programme": "install_recovery_hpg",
            "indicator": "technicians_trained_share",
            "value": 0.3,
        },
    ]
    replay = Replay(default_plan)
    replay.add_lines(orjson.dumps(e) for e in events)
    assert replay.stats.rejected == 0
    records = [r for r in replay.records("month", complete=True) if r["level"] == "programme"]
    by = {(r["window_start"][:7], r["unit"], r["indicator"]): r for r in records}
    assert {k[1] for k in by} == {"HPG"}  # the programme covers HPG only
    assert ("2026-10", "HPG", "technicians_trained_share") not in by  # before its start
    trained = by[("2026-11", "HPG", "technicians_trained_share")]
    assert (trained["value"], trained["target"]) == (0.3, 0.5)
    assert trained["attainment"] == approx(0.6) and trained["on_track"] is False
    (effect,) = trained["effect"]
    assert effect["kpi"] == "install_on_time"
    assert effect["unit_delta"] == approx(4.0)
    assert effect["network_delta"] == approx(2.0)
    backlog = by[("2026-11", "HPG", "install_backlog_orders")]
    assert backlog["value"] is None and backlog["attainment"] is None  # no update yet


def test_an_update_of_an_unknown_programme_or_indicator_is_rejected(
    default_plan: ScoringPlan,
) -> None:
    update = {
        "type": "programme_update",
        "event_id": "x",
        "event_time": local_ms("2026-11-20 09:00"),
        "unit": "HPG",
        "programme": "install_recovery_hpg",
        "indicator": "trained",
        "value": 1.0,
    }
    replay = Replay(default_plan)
    reasons: list[str] = []
    replay.add_lines(
        [orjson.dumps(update), orjson.dumps({**update, "event_id": "y", "programme": "nope"})],
        lambda _, error: reasons.append(error.code),
    )
    assert reasons == ["unknown_indicator", "unknown_programme"]


def test_the_default_catalog_compiles_its_programme_to_local_midnights() -> None:
    (programme,) = compile_programmes(load_catalog()).values()
    assert programme.start_ms == local_ms("2026-11-01 00:00")
    assert programme.end_ms == local_ms("2027-04-01 00:00")  # the end date is included
    assert programme.covers("HPG") and not programme.covers("QBH")


def test_a_missed_phase_fires_to_the_owner_and_resolves_when_the_target_is_reached() -> None:
    """technicians_trained_share: 0.3 on 20 Dec, short of the 0.5 due on 31 Dec, so at the
    deadline (1 Jan 00:00 local) it fires, once the watermark passed it plus the lateness;
    0.6 on 10 Jan reaches 0.5: resolved, dated 10 Jan. install_backlog_orders: 100 open
    orders against 120 (lower is better): on track, no alert."""
    from zoneinfo import ZoneInfo

    from streams.scoring.programme_alerts import ProgrammeMachine, step

    (programme,) = compile_programmes(load_catalog()).values()
    values = ProgrammeValues()
    values.add(programme.programme, "technicians_trained_share", local_ms("2026-12-20 09:00"), 0.3)
    values.add(programme.programme, "install_backlog_orders", local_ms("2026-12-20 09:00"), 100.0)
    machines: dict[tuple[str, str], ProgrammeMachine] = {}
    lateness = 600_000
    zone = ZoneInfo("Asia/Ho_Chi_Minh")

    def at(watermark: str) -> list[tuple[str, str]]:
        records = step(
            [programme], "HPG", machines, values, local_ms(watermark), lateness, zone, "v"
        )
        return [(r["state"], r["indicator"]) for r in records]

    assert at("2027-01-01 00:05") == []  # the deadline is not final yet
    fired = step(
        [programme], "HPG", machines, values, local_ms("2027-01-01 00:10"), lateness, zone, "v"
    )
    assert [(r["state"], r["indicator"], r["owner"]) for r in fired] == [
        ("firing", "technicians_trained_share", "HPG technical centre")
    ]
    assert fired[0]["started_at_ms"] == local_ms("2027-01-01 00:00")
    assert (fired[0]["score"], fired[0]["threshold"]) == (0.3, 0.5)
    assert at("2027-01-05 00:00") == []  # still behind: no duplicate
    values.add(programme.programme, "technicians_trained_share", local_ms("2027-01-10 09:00"), 0.6)
    resolved = step(
        [programme], "HPG", machines, values, local_ms("2027-01-11 00:00"), lateness, zone, "v"
    )
    assert [(r["state"], r["resolved_at_ms"]) for r in resolved] == [
        ("resolved", local_ms("2027-01-10 09:00"))
    ]
    assert resolved[0]["alert_id"] == fired[0]["alert_id"]
    assert at("2027-02-01 00:00") == []
    trained = machines[(programme.programme, "technicians_trained_share")]
    assert (trained.checked, trained.state) == (1, "normal")  # one phase checked, resolved
