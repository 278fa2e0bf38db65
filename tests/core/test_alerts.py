"""The alert state machine: every transition, the clock edges and the overrides."""

from __future__ import annotations

from streams.core.alerts import NORMAL, AlertRule, AlertState, acknowledge, step

RULE = AlertRule(threshold=3.0, min_sample=20, hold_ms=300_000, hysteresis=0.2)
MIN = 60_000


def run(rule: AlertRule, points: list[tuple[float | None, int, int]]) -> list[tuple[str, int]]:
    """Feed (score, sample, minute) and collect (transition kind, at minute)."""
    state, seen = NORMAL, []
    for score, sample, minute in points:
        state, transitions = step(rule, state, score, sample, minute * MIN)
        seen += [(t.kind, t.at_ms // MIN) for t in transitions]
    return seen


def test_low_score_goes_pending_then_fires_after_exactly_the_hold() -> None:
    state, out = step(RULE, NORMAL, 2.5, 25, 0)
    assert (state.state, out) == ("pending", [])
    state, out = step(RULE, state, 2.4, 25, 300_000 - 1)  # one ms short of the hold
    assert (state.state, out) == ("pending", [])
    state, out = step(RULE, state, 2.4, 25, 300_000)  # exactly the hold
    assert state.state == "firing" and [t.kind for t in out] == ["firing"]
    assert state.started_at_ms == 300_000 and state.pending_since_ms == 0


def test_recovery_during_pending_cancels_without_any_transition() -> None:
    assert run(RULE, [(2.5, 25, 0), (3.1, 25, 2), (2.5, 25, 4), (2.5, 25, 8)]) == []
    assert run(RULE, [(2.5, 25, 0), (3.1, 25, 2), (2.5, 25, 4), (2.5, 25, 9)]) == [("firing", 9)]


def test_resolves_only_at_threshold_plus_hysteresis() -> None:
    points = [(2.0, 30, 0), (2.0, 30, 5), (3.1, 30, 6), (3.19, 30, 7), (3.2, 30, 8)]
    assert run(RULE, points) == [("firing", 5), ("resolved", 8)]


def test_oscillating_within_the_hysteresis_fires_once() -> None:
    points = [(2.9, 30, m) for m in range(0, 6)]
    points += [(3.1 if m % 2 else 2.95, 30, m) for m in range(6, 60)]
    assert run(RULE, points) == [("firing", 5)]


def test_fewer_events_than_min_sample_never_fire() -> None:
    assert run(RULE, [(1.0, 19, m) for m in range(0, 60)]) == []


def test_no_data_is_not_a_low_score_and_a_firing_alert_survives_silence() -> None:
    state, out = step(RULE, NORMAL, None, 0, 0)
    assert (state.state, out) == ("no_data", [])
    state, _ = step(RULE, state, 2.0, 30, MIN)
    assert state.state == "pending"
    state, _ = step(RULE, state, None, 0, 2 * MIN)  # data gone while pending: cancelled
    assert state.state == "no_data"
    firing = AlertState("firing", 0, 5 * MIN)
    assert step(RULE, firing, None, 0, 6 * MIN) == (firing, [])


def test_resolved_carries_start_and_end_and_returns_to_normal() -> None:
    state, out = step(RULE, AlertState("firing", 0, 5 * MIN), 4.0, 30, 9 * MIN)
    assert state == NORMAL
    (resolved,) = out
    assert (resolved.kind, resolved.started_at_ms, resolved.resolved_at_ms) == (
        "resolved",
        5 * MIN,
        9 * MIN,
    )


def test_acknowledged_alert_stays_firing_and_is_acknowledged_once() -> None:
    firing = AlertState("firing", 0, 5 * MIN)
    acked, out = acknowledge(firing, "ops-anna", 6 * MIN)
    assert acked.state == "firing" and acked.acknowledged_by == "ops-anna"
    assert [t.kind for t in out] == ["acknowledged"]
    assert acknowledge(acked, "ops-bob", 7 * MIN) == (acked, [])
    assert step(RULE, acked, 2.0, 30, 8 * MIN) == (acked, [])
    _, out = step(RULE, acked, 3.5, 30, 9 * MIN)
    assert out[0].kind == "resolved" and out[0].acknowledged_by == "ops-anna"
    assert acknowledge(NORMAL, "x", 0) == (NORMAL, [])


def test_catalog_overrides_change_hold_sample_and_hysteresis() -> None:
    instant = AlertRule(threshold=3.5, min_sample=1, hold_ms=0, hysteresis=0.0)
    assert run(instant, [(3.4, 1, 0), (3.5, 1, 1)]) == [("firing", 0), ("resolved", 1)]
    assert run(RULE, [(3.4, 1, 0), (3.5, 1, 1)]) == []


def test_rules_come_from_the_catalog_with_touchpoint_overrides() -> None:
    from streams.core.catalog import parse_catalog
    from streams.core.plan import ScoringPlan
    from tests.core.test_catalog import canonical

    data = canonical()
    data["alerts"] = {"min_sample": 10, "hold_ms": 120_000}
    data["services"]["mobile"]["touchpoints"]["install"]["alert"] = {"hysteresis": 0.5}
    plan = ScoringPlan(parse_catalog(data))
    (install,) = plan.touchpoints
    assert install.rule == AlertRule(
        threshold=3.0, min_sample=10, hold_ms=120_000, hysteresis=0.5, min_kpi_sample=5
    )
    assert plan.services[0].rule.threshold == 3.0  # the catalog default
