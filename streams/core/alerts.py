"""The alert lifecycle (SPEC §7), as a pure state machine over event time.

normal -> pending (score below the threshold with at least `min_sample` events behind it)
       -> firing (still below after `hold_ms` of event time)
       -> resolved (score back at or above threshold + `hysteresis`) -> normal.
`no_data` (no score in the window) is not a low score and never fires; a firing alert that
loses its data stays firing (silence is not recovery). An acknowledged alert stays firing,
marked acknowledged, until it resolves. Only firing, resolved and acknowledged are
transitions worth publishing; pending and no_data are internal.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final, Literal

State = Literal["normal", "pending", "firing", "no_data"]
TransitionKind = Literal["firing", "resolved", "acknowledged"]
STATES: Final = ("normal", "pending", "firing", "no_data")


@dataclass(frozen=True)
class AlertRule:
    threshold: float
    min_sample: int
    hold_ms: int
    hysteresis: float
    min_kpi_sample: int = 1


@dataclass(frozen=True)
class AlertState:
    state: State = "normal"
    pending_since_ms: int | None = None
    started_at_ms: int | None = None  # when it fired
    acknowledged_by: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_by is not None


@dataclass(frozen=True)
class Transition:
    kind: TransitionKind
    at_ms: int
    started_at_ms: int
    resolved_at_ms: int | None = None
    acknowledged_by: str | None = None


NORMAL: Final = AlertState()


def step(
    rule: AlertRule, current: AlertState, score: float | None, sample: int, now_ms: int
) -> tuple[AlertState, list[Transition]]:
    """The state after evaluating `score` (over `sample` events) at event time `now_ms`."""
    if current.state == "firing":
        if score is not None and score >= rule.threshold + rule.hysteresis:
            started = current.started_at_ms if current.started_at_ms is not None else now_ms
            return NORMAL, [
                Transition(
                    "resolved",
                    now_ms,
                    started,
                    resolved_at_ms=now_ms,
                    acknowledged_by=current.acknowledged_by,
                )
            ]
        return current, []
    if score is None:
        return AlertState("no_data"), []
    low = score < rule.threshold and sample >= rule.min_sample
    if not low:
        return NORMAL, []
    since = current.pending_since_ms if current.state == "pending" else now_ms
    assert since is not None
    if now_ms - since >= rule.hold_ms:
        return AlertState("firing", since, now_ms), [Transition("firing", now_ms, now_ms)]
    return AlertState("pending", since), []


def acknowledge(current: AlertState, by: str, now_ms: int) -> tuple[AlertState, list[Transition]]:
    """Acknowledging a firing alert marks it (once); anything else is left as is."""
    if current.state != "firing" or current.acknowledged:
        return current, []
    started = current.started_at_ms if current.started_at_ms is not None else now_ms
    acked = replace(current, acknowledged_by=by)
    return acked, [Transition("acknowledged", now_ms, started, acknowledged_by=by)]
