"""`programme_behind` alerts: an action programme's indicator that missed a phase's due date
(its latest value at the deadline short of that phase's target, or no value at all) fires an
alert to the programme's owner; it resolves once a later value reaches that target. Same
lifecycle and topic as the touchpoint alerts (firing, acknowledged, resolved), stepped on
event time, so a replay raises the same records: a deadline is checked once the watermark
passed it plus the allowed lateness (the windows' closing rule), and a resolution is dated
by the value that reached the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from zoneinfo import ZoneInfo

from streams.core.programmes import ProgrammeDef, ProgrammeValues, attainment
from streams.core.windows import is_final
from streams.scoring.alerting import alert_id

RULE: Final = "programme_behind"


@dataclass
class ProgrammeMachine:
    checked: int = 0  # the phases whose deadline was checked
    state: str = "normal"  # normal | firing
    missed: int = -1  # the phase whose deadline it missed (firing)
    started_at_ms: int | None = None
    acknowledged_by: str | None = None

    def dump(self) -> list[Any]:
        return [self.checked, self.state, self.missed, self.started_at_ms, self.acknowledged_by]


def step(
    programmes: list[ProgrammeDef],
    unit: str,
    machines: dict[tuple[str, str], ProgrammeMachine],
    values: ProgrammeValues,
    watermark_ms: int,
    lateness_ms: int,
    timezone: ZoneInfo,
    version: str,
) -> list[dict[str, Any]]:
    """Check the deadlines the watermark passed and the firing alerts' resolution; the
    alert records of the transitions."""
    out: list[dict[str, Any]] = []
    for programme in programmes:
        if not programme.covers(unit):
            continue
        for indicator in programme.indicators.values():
            key = (programme.programme, indicator.indicator)
            machine = machines.setdefault(key, ProgrammeMachine())
            deadlines = programme.due_ends(indicator, timezone)
            while machine.checked < len(deadlines) and is_final(
                watermark_ms, deadlines[machine.checked], lateness_ms
            ):
                deadline = deadlines[machine.checked]
                target = indicator.phases[machine.checked][1]
                value = values.at(*key, deadline)
                attained = attainment(indicator.lower_is_better, value, target)
                if machine.state == "normal" and (attained is None or attained < 1.0):
                    machine.state, machine.missed = "firing", machine.checked
                    machine.started_at_ms, machine.acknowledged_by = deadline, None
                    out.append(
                        record(programme, unit, key, machine, "firing", value, target, version)
                    )
                machine.checked += 1
            if machine.state != "firing":
                continue
            target = indicator.phases[machine.missed][1]
            latest = values.latest(*key, watermark_ms - lateness_ms + 1)
            if latest is None:
                continue
            at_ms, value = latest
            attained = attainment(indicator.lower_is_better, value, target)
            if attained is not None and attained >= 1.0 and at_ms >= (machine.started_at_ms or 0):
                out.append(
                    record(programme, unit, key, machine, "resolved", value, target, version, at_ms)
                )
                machine.state, machine.missed = "normal", -1
                machine.started_at_ms = machine.acknowledged_by = None
    return out


def acknowledge(
    programmes: dict[str, ProgrammeDef],
    unit: str,
    machines: dict[tuple[str, str], ProgrammeMachine],
    values: ProgrammeValues,
    wanted_id: str,
    by: str,
    version: str,
) -> list[dict[str, Any]]:
    """Acknowledge the firing programme alert with this id (once)."""
    for key, machine in machines.items():
        if alert_id(RULE, unit, *key) != wanted_id:
            continue
        if machine.state != "firing" or machine.acknowledged_by is not None:
            return []
        programme = programmes[key[0]]
        target = programme.indicators[key[1]].phases[machine.missed][1]
        machine.acknowledged_by = by
        value = values.at(*key, (machine.started_at_ms or 0))
        return [record(programme, unit, key, machine, "acknowledged", value, target, version)]
    return []


def record(
    programme: ProgrammeDef,
    unit: str,
    key: tuple[str, str],
    machine: ProgrammeMachine,
    state: str,
    value: float | None,
    target: float,
    version: str,
    resolved_at_ms: int | None = None,
) -> dict[str, Any]:
    """An alert record (schemas/out/alert.avsc) of a programme indicator."""
    service, touchpoint = (programme.improves[0][:2]) if programme.improves else ("", None)
    return {
        "alert_id": alert_id(RULE, unit, *key),
        "rule": RULE,
        "state": state,
        "unit": unit,
        "service": service,
        "touchpoint": touchpoint,
        "score": value,
        "threshold": target,
        "class": None,
        "window": "programme",
        "window_start_ms": programme.start_ms,
        "window_end_ms": machine.started_at_ms or programme.end_ms,
        "sample": 0,
        "started_at_ms": machine.started_at_ms,
        "resolved_at_ms": resolved_at_ms,
        "acknowledged_by": machine.acknowledged_by,
        "inhibited": False,
        "catalog_version": version,
        "top_kpis": [],
        "excluded_kpis": [],
        "owner": programme.owner,
        "programme": key[0],
        "indicator": key[1],
    }
