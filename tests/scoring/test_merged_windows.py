"""Quarter and year windows in the stream: merges of the month windows the fold keeps, equal to
the batch replay's (which merges days), kept as long as their year is."""

from __future__ import annotations

from typing import Any

import orjson
from pytest import approx

from streams.batch import Replay
from streams.contract.envelope import encode_envelope, entry_for
from streams.core.events import validate_event
from streams.core.plan import ScoringPlan
from streams.scoring.expiry import expire
from streams.scoring.persistence import load_state
from streams.tools.simulate.generator import DAY_MS, Generator
from tests.factories import local_ms
from tests.scoring.test_durability import tick
from tests.scoring.test_service import Envelope, Feeder, service_for


def history(days: int, count: int) -> list[dict[str, Any]]:
    """Events of two units from mid-September: across a quarter boundary."""
    start = local_ms("2026-09-20 00:00")
    generator = Generator(units=("HPG", "QBH"), start_ms=start, span_ms=days * DAY_MS, seed=11)
    return list(generator.events(count))


def fold(plan: ScoringPlan, events: list[dict[str, Any]]) -> tuple[Any, Feeder]:
    service = service_for(plan)
    feeder = Feeder(plan, service)
    load = lambda: list(feeder.table.items())  # noqa: E731
    for i in range(0, len(events), 500):
        rows = []
        for offset, event in enumerate(events[i : i + 500], start=i):
            e = validate_event(dict(event))
            rows.append(entry_for(e, plan.contributions(e), "in", 0, offset, 1))
        service.on_envelope(0, encode_envelope(rows), Envelope(), load, feeder.write, offset=i)
    return service, feeder


def latest(messages: list[Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
    out = {}
    for m in messages:
        if m[0] == "score":
            r = m[1]
            out[(r["level"], r["unit"], r["service"], r["touchpoint"], r["kpi"], r["window"],
                 r["window_start"])] = r  # fmt: skip
    return out


def test_quarter_and_year_records_equal_the_batch_replay(default_plan: ScoringPlan) -> None:
    events = history(days=20, count=20_000)
    service, _ = fold(default_plan, events)
    published = latest(service.emit().messages)
    replay = Replay(default_plan)
    replay.add_lines(orjson.dumps(e) for e in events)
    for kind in ("quarter", "year"):
        batch = [r for r in replay.records(kind) if r["level"] != "network"]
        assert len({r["window_start"] for r in batch}) == (2 if kind == "quarter" else 1)
        for record in batch:
            key = (record["level"], record["unit"], record["service"], record["touchpoint"],
                   record["kpi"], kind, record["window_start"])  # fmt: skip
            stream = published[key]
            for field in ("score", "value", "coverage", "delta_prev", "target_ratio"):
                if record[field] is None:
                    assert stream.get(field) is None, (key, field)
                else:
                    assert stream[field] == approx(record[field], rel=1e-9, abs=1e-12), (key, field)


def test_a_quarter_stays_whole_after_a_restart_and_its_months_stay_while_its_year_does(
    default_plan: ScoringPlan,
) -> None:
    events = history(days=20, count=6_000)
    service, feeder = fold(default_plan, events)
    service.emit()
    tick(feeder)
    state = service.partitions[0].state
    q3 = ("HPG", "quarter", local_ms("2026-07-01 00:00"))
    before = state.accumulators_of(q3)
    assert before and state.windows[q3].final  # the watermark is in October: Q3 is final
    expire(state)
    # September's month window is final and its successor closed, but its year is kept
    assert ("HPG", "month", local_ms("2026-09-01 00:00")) in state.windows
    reloaded = load_state(0, state.config, list(feeder.table.items()), 0)  # type: ignore[arg-type]
    assert reloaded.accumulators_of(q3) == before
    assert reloaded.windows[q3].revision == state.windows[q3].revision


def test_programme_records_of_the_stream_equal_the_batch(default_plan: ScoringPlan) -> None:
    """HPG history from mid-October across the programme's start (1 November): the stream
    keeps the October baseline when it publishes October, and its November records (value,
    target, attainment, the unit's effect) equal `cemi score`'s."""
    start = local_ms("2026-10-20 00:00")
    generator = Generator(units=("HPG", "QBH"), start_ms=start, span_ms=20 * DAY_MS, seed=12)
    events = list(generator.events(12_000))
    for day, value in ((25, 0.1), (3, 0.2), (6, 0.35)):  # Oct 25, Nov 3, Nov 6
        month = 10 if day > 20 else 11
        events.append(
            {
                "type": "programme_update",
                "event_id": f"pu-{month}-{day}",
                "event_time": local_ms(f"2026-{month}-{day:02d} 09:00"),
                "unit": "HPG",
                "programme": "install_recovery_hpg",
                "indicator": "technicians_trained_share",
                "value": value,
            }
        )
    events.sort(key=lambda e: e["event_time"])
    service, _ = fold(default_plan, events)
    messages = service.emit().messages
    stream = {
        (r["window"], r["window_start"], r["indicator"]): r
        for m in messages
        if m[0] == "programme"
        for r in (m[1],)
    }
    replay = Replay(default_plan)
    replay.add_lines(orjson.dumps(e) for e in events)
    compared = 0
    for kind in ("month", "day"):
        for record in replay.records(kind, complete=True):
            if record["level"] != "programme":
                continue
            got = stream[(kind, record["window_start"], record["indicator"])]
            for field in ("value", "target", "attainment", "on_track"):
                assert got[field] == record[field], (record["window_start"], field)
            assert [e["unit_delta"] for e in got["effect"]] == [
                e["unit_delta"] for e in record["effect"]
            ]
            compared += 1
    assert compared > 10
    november = stream[("month", "2026-11-01T00:00:00+07:00", "technicians_trained_share")]
    assert november["value"] == 0.35 and november["effect"][0]["unit_delta"] is not None
