"""Alert evaluation on the rolling window, at every slice boundary the watermark passes.

Per unit the rolling window's accumulators are kept as a running sum: when a boundary passes,
the slice that just ended enters and the one that fell out of the span leaves; an accepted
late event inside the span is added directly. Only touchpoints whose KPIs changed, and
machines waiting out their hold, are evaluated, so the cost follows the events, not the
number of boundaries. Evaluation runs on event time only, so a replay at full speed raises
the same alerts, with the same times, as the live stream did.

One evaluation algorithm in one module (the rolling window it steps is `streams.scoring.
rolling`): its shortcuts (quiet services, unmoved touchpoints, boundaries jumped over) only
make sense read beside the evaluation they skip.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from typing import Any

from streams.core.accumulators import Accumulators
from streams.core.alerts import NORMAL, AlertRule, AlertState, Transition, acknowledge, step
from streams.core.classes import classify
from streams.core.plan import ScoringPlan
from streams.core.rollup import KpiResult, kpi_result, kpi_value
from streams.scoring.rolling import KpiGroups, UnitRolling

AlertKey = tuple[str, str, str | None]  # (unit, service, touchpoint or None for the service)
EXCLUDED = KpiResult(None, None, 0.0, 0.0)  # too few events in the window to count


NO_SCORE: tuple[float | None, int] = (None, 0)  # a touchpoint never evaluated
NO_EVENTS = (0.0, 0.0, 0.0)  # the accumulator of a KPI without events in the window
_ACTIVE = frozenset(("pending", "firing"))  # beyond normal and no_data: never quiet


def _steady(current: AlertState | None, rule: AlertRule, score: float | None, sample: int) -> bool:
    """`step` would leave this machine as it is, with no transition: normal and not low, or
    no data and still none (the common case at a slice boundary, decided without `step`)."""
    if current is None:
        return score is not None and not (score < rule.threshold and sample >= rule.min_sample)
    return score is None and current.state == "no_data"


def alert_id(rule: str, unit: str, service: str, touchpoint: str | None) -> str:
    """Stable id: a fingerprint of rule, unit, service and touchpoint."""
    text = f"{rule}|{unit}|{service}|{touchpoint or ''}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class AlertEvaluator:
    """Steps the alert machines of the units of one partition (no Kafka)."""

    def __init__(
        self, plan: ScoringPlan, span_ms: int, slice_ms: int, skip_quiet: bool = True
    ) -> None:
        self.plan = plan
        self.skip_quiet = skip_quiet
        self.quiet_skips = 0  # service evaluations skipped as quiet (for tests, profiling)
        self.span_ms = span_ms
        self.slice_ms = slice_ms
        self.kpi_touchpoint = {k: tp.index for tp in plan.touchpoints for k in tp.kpis}
        self.touchpoint_service = {t: s.index for s in plan.services for t in s.touchpoints}
        self.kpi_groups: KpiGroups = {
            k: (t, self.touchpoint_service[t], plan.touchpoints[t].rule.min_kpi_sample)
            for k, t in self.kpi_touchpoint.items()
        }
        # per service, for `_evaluate`: its rule, name and (touchpoint, weight) pairs; per
        # touchpoint: its rule and service name
        self._service_plan = [
            (svc.rule, svc.service, tuple((t, plan.touchpoints[t].weight) for t in svc.touchpoints))
            for svc in plan.services
        ]
        self._touchpoint_plan = [(tp.rule, tp.service) for tp in plan.touchpoints]
        self._touchpoint_weight = [tp.weight for tp in plan.touchpoints]
        self._kpi_sample_floor = [tp.rule.min_kpi_sample for tp in plan.touchpoints]
        # a service's touchpoints are summed in index order: that must be plan order
        assert all(list(svc.touchpoints) == sorted(svc.touchpoints) for svc in plan.services)
        # per service, for `_quiet`: (touchpoint index, its min_sample) of each touchpoint;
        # fewer events than `_quiet_below` in a service make it quiet whatever their spread
        self._quiet_plan = [
            tuple((t, plan.touchpoints[t].rule.min_sample) for t in svc.touchpoints)
            for svc in plan.services
        ]
        self._quiet_below = [
            min([svc.rule.min_sample] + [m for _, m in self._quiet_plan[svc.index]])
            for svc in plan.services
        ]
        # services where that count decides both ways: at or above it, the service itself
        # has its min_sample (the default catalog's case)
        self._quiet_decided = [
            self._quiet_below[svc.index] == svc.rule.min_sample for svc in plan.services
        ]
        # per touchpoint, for `_touchpoint_score`: its service, its min_kpi_sample, and
        # (index, weight, kind, scale) of each of its KPIs
        self._score_plan = [
            (
                tp.service,
                tp.rule.min_kpi_sample,
                tuple(
                    (k, plan.kpis[k].weight, plan.kpis[k].kind, plan.kpis[k].scale) for k in tp.kpis
                ),
            )
            for tp in plan.touchpoints
        ]

    def advance(
        self,
        unit: str,
        rolling: UnitRolling,
        slices: dict[int, Accumulators],
        bases: dict[str, float],
        watermark_ms: int,
        inhibitions: dict[tuple[str, str], bool],
    ) -> list[dict[str, Any]]:
        """Step every boundary up to the watermark; return alert records of transitions."""
        out: list[dict[str, Any]] = []
        slice_ms, span_ms, groups = self.slice_ms, self.span_ms, self.kpi_groups
        target = watermark_ms - watermark_ms % slice_ms
        moments: list[int] | None = None
        at = 0
        while rolling.boundary < target:
            if not rolling.dirty and not rolling.pending and rolling.counts is not None:
                # Nothing to evaluate until a slice enters or leaves: a catch-up crosses
                # every boundary of the span, most of them with no event at all.
                if moments is None:
                    moments = sorted({s for s in slices} | {s + span_ms for s in slices})
                at = bisect_left(moments, rolling.boundary, at)
                if at == len(moments) or moments[at] >= target:
                    rolling.boundary = target
                    break
                rolling.boundary = moments[at]
            boundary = rolling.boundary
            entering = slices.get(boundary)
            leaving = slices.get(boundary - span_ms)
            rolling.boundary = boundary + slice_ms
            if entering:
                rolling.add(entering, 1.0, groups)
            if leaving:
                rolling.add(leaving, -1.0, groups)
            if (
                rolling.pending
                or rolling.counts is None
                or rolling.stale is None
                or (rolling.dirty and not self._passed_quietly(rolling))
            ):
                out.extend(self._evaluate(unit, rolling, bases, inhibitions))
        return out

    def _passed_quietly(self, rolling: UnitRolling) -> bool:
        """`_evaluate`'s outcome when every changed touchpoint belongs to a quiet service
        (most boundaries of a catch-up), in one pass without its sets: the services of the
        touchpoints it would have scored become stale, and nothing is stepped. False (and
        nothing changed): some service is not quiet, `_evaluate` decides."""
        if not self.skip_quiet:
            return False
        active = rolling.active
        if active is None:
            return False
        touchpoint_service, below = self.touchpoint_service, self._quiet_below
        service_counts, decided = rolling.service_counts, self._quiet_decided
        dirty = rolling.dirty
        for t in dirty:
            s = touchpoint_service[t]
            if s in active or service_counts[s] >= below[s]:
                return False
            if not decided[s] and not self._quiet(rolling, s):
                return False
        counts, floors, scored = rolling.counts or [], self._kpi_sample_floor, rolling.touchpoints
        stale = rolling.stale
        assert stale is not None
        quiet = 0
        for t in dirty:
            s = touchpoint_service[t]
            if counts[t] >= floors[t] or scored.get(t) != NO_SCORE or s in stale:
                stale.add(s)
                quiet += 1
        self.quiet_skips += quiet
        dirty.clear()
        return True

    def _evaluate(
        self,
        unit: str,
        rolling: UnitRolling,
        bases: dict[str, float],
        inhibitions: dict[tuple[str, str], bool],
    ) -> list[dict[str, Any]]:
        plan = self.plan
        now = rolling.boundary
        touchpoint_service = self.touchpoint_service
        if rolling.counts is None:
            rolling.recount(self.kpi_groups, len(plan.touchpoints), len(plan.services))
        touched = rolling.dirty
        rolling.dirty = set()
        pending = rolling.pending
        counts, floors, scored = rolling.counts or [], self._kpi_sample_floor, rolling.touchpoints
        stale = rolling.stale
        if stale is not None:
            # Too few events to be scored, and not scored before either: nothing moves for
            # the touchpoint, nor for its service unless that one is to be brought up to
            # date (the common case at a boundary of a catch-up, decided here first).
            touched = {
                t
                for t in touched
                if counts[t] >= floors[t]
                or scored.get(t) != NO_SCORE
                or touchpoint_service[t] in stale
            }
            if not touched and not pending:
                return []
        if pending:
            touched |= {i for i in pending if i >= 0}
        services = {touchpoint_service[t] for t in touched}
        if pending:
            services |= {-1 - i for i in pending if i < 0}
        if rolling.stale is None:
            rolling.stale = set(range(len(plan.services)))
        if self.skip_quiet:
            # A quiet service (too few events for it or any touchpoint to be low, and no
            # machine beyond no_data) cannot raise or end anything: its scores are brought
            # up to date only when it is evaluated again. A catch-up crosses every slice
            # boundary, most of them with a handful of events.
            active = rolling.active
            if active is None:
                active = rolling.active = {
                    touchpoint_service[i] if i >= 0 else -1 - i
                    for i, m in rolling.machines.items()
                    if m.state != "no_data"
                }
            service_counts, below = rolling.service_counts, self._quiet_below
            quiet = [
                s
                for s in services
                if s not in active
                and (
                    service_counts[s] < below[s]
                    or (not self._quiet_decided[s] and self._quiet(rolling, s))
                )
            ]
            if quiet:
                self.quiet_skips += len(quiet)
                rolling.stale.update(quiet)
                if len(quiet) == len(services):  # pending machines are never quiet
                    return []
                services.difference_update(quiet)
                touched = {t for t in touched if touchpoint_service[t] in services}
        for s in services & rolling.stale:
            touched.update(plan.services[s].touchpoints)
        rolling.stale -= services
        sums = rolling.sums
        scoring = rolling.scoring
        score_of = self._touchpoint_score
        # A touchpoint whose (score, sample) is what its machine was last stepped with
        # needs no step (a step is idempotent but for pending, which is stepped anyway),
        # and adds nothing new to its service's score.
        moved: list[int] = []
        for t in touched:
            # fewer events in all its KPIs together than one KPI needs: none is counted
            result = NO_SCORE if counts[t] < floors[t] else score_of(t, sums, bases)
            if scored.get(t) == result:
                continue
            scored[t] = result
            moved.append(t)
            members = scoring.get(touchpoint_service[t])
            if members is None:
                members = scoring[touchpoint_service[t]] = set()
            if result == NO_SCORE:
                members.discard(t)
            else:
                members.add(t)
        if pending:
            moved.extend(i for i in pending if i >= 0 and i not in moved)  # all touched
        if not moved and not pending:
            return []
        # the services of moved touchpoints, and those with a pending machine (a service
        # is stepped before its touchpoints: their records say whether it fires)
        services = {touchpoint_service[t] for t in moved}
        if pending:
            services |= {-1 - i for i in pending if i < 0}
        out: list[dict[str, Any]] = []
        machines = rolling.machines
        weights = self._touchpoint_weight
        for s in sorted(services) if len(services) > 1 else services:
            rule, service, _ = self._service_plan[s]
            present = acc = 0.0
            sample = 0
            # in plan order, as weighted_mean adds them (the same float sums)
            for t in sorted(scoring.get(s, ())):
                tp_score, tp_sample = scored[t]
                if tp_score is not None:
                    weight = weights[t]
                    present += weight
                    acc += weight * tp_score
                sample += tp_sample
            score = acc / present if present else None  # weighted_mean, inline
            rolling.services[s] = score
            if not _steady(machines.get(-1 - s), rule, score, sample):
                out += self._step(unit, rolling, -1 - s, rule, score, sample, now, bases, False)
            machine = machines.get(-1 - s)
            inhibitions[(unit, service)] = machine is not None and machine.state == "firing"
        touchpoint_plan = self._touchpoint_plan
        for t in sorted(moved) if len(moved) > 1 else moved:
            score, sample = scored[t]
            rule, service = touchpoint_plan[t]
            if _steady(machines.get(t), rule, score, sample):
                continue
            inhibited = inhibitions.get((unit, service), False)
            out += self._step(unit, rolling, t, rule, score, sample, now, bases, inhibited)
        return out

    def _touchpoint_score(
        self, t: int, sums: Accumulators, bases: dict[str, float]
    ) -> tuple[float | None, int]:
        """(score, sample) of a touchpoint on the rolling sums: the weighted mean of the
        points of its KPIs with at least min_kpi_sample events (`kpi_result` and
        `weighted_mean` without their objects: this runs at every slice boundary), and the
        events behind the KPIs that are present."""
        service, min_kpi_sample, kpis = self._score_plan[t]
        base = bases.get(service)
        present = acc = counted = 0.0
        for k, weight, kind, scale in kpis:
            found = sums.get(k, NO_EVENTS)
            n = found[0]
            if n < min_kpi_sample:
                continue
            value = kpi_value(kind, n, found[1], found[2], base, self.span_ms)
            if value is None:
                continue
            present += weight
            acc += weight * scale(value)
            counted += n
        if present == 0.0:
            return None, int(counted)
        return acc / present, int(counted)

    def _kpi_results(self, t: int, sums: Accumulators, bases: dict[str, float]) -> list[KpiResult]:
        """The KPI results of a touchpoint behind an alert record (its top KPIs)."""
        tp = self.plan.touchpoints[t]
        base = bases.get(tp.service)
        return [
            kpi_result(self.plan.kpis[k], sums.get(k), base, self.span_ms)
            if sums.get(k, (0.0,))[0] >= tp.rule.min_kpi_sample
            else EXCLUDED
            for k in tp.kpis
        ]

    def _quiet(self, rolling: UnitRolling, s: int) -> bool:
        """No touchpoint of the service, nor the service, has its min_sample of events
        (upper bounds of the samples: every KPI's count, present or not). Asked only when
        the service's count alone does not decide it."""
        counts = rolling.counts or []
        for t, min_sample in self._quiet_plan[s]:
            if counts[t] >= min_sample:
                return False
        return rolling.service_counts[s] < self.plan.services[s].rule.min_sample

    def _step(
        self,
        unit: str,
        rolling: UnitRolling,
        index: int,
        rule: AlertRule,
        score: float | None,
        sample: int,
        now: int,
        bases: dict[str, float],
        inhibited: bool,
    ) -> list[dict[str, Any]]:
        current = rolling.machines.get(index, NORMAL)
        state, transitions = step(rule, current, score, sample, now)
        if state.state != current.state and _ACTIVE.intersection((state.state, current.state)):
            rolling.active = None  # recomputed by the next quiet check
        if state == NORMAL:
            rolling.machines.pop(index, None)
        else:
            rolling.machines[index] = state
        if state.state == "pending":
            rolling.pending.add(index)
        else:
            rolling.pending.discard(index)
        if not transitions:
            return []
        kpis = self._kpi_results(index, rolling.sums, bases) if index >= 0 else None
        return [
            self.record(unit, index, rule, score, sample, t, kpis, inhibited, now)
            for t in transitions
        ]

    def acknowledge(
        self, unit: str, rolling: UnitRolling, index: int, by: str, now_ms: int
    ) -> list[dict[str, Any]]:
        state, transitions = acknowledge(rolling.machines.get(index, NORMAL), by, now_ms)
        if transitions:
            rolling.machines[index] = state
        rule = self._rule(index)
        score = self._score(rolling, index)
        sample = rolling.touchpoints.get(index, (None, 0))[1] if index >= 0 else 0
        return [
            self.record(unit, index, rule, score, sample, t, None, False, now_ms)
            for t in transitions
        ]

    def _rule(self, index: int) -> AlertRule:
        if index >= 0:
            return self.plan.touchpoints[index].rule
        return self.plan.services[-1 - index].rule

    def _score(self, rolling: UnitRolling, index: int) -> float | None:
        if index >= 0:
            return rolling.touchpoints.get(index, (None, 0))[0]
        return rolling.services.get(-1 - index)

    def index_of(self, service: str, touchpoint: str | None) -> int | None:
        """The machine index of a touchpoint rule, or of the service rule (touchpoint None)."""
        for svc in self.plan.services:
            if svc.service != service:
                continue
            if touchpoint is None:
                return -1 - svc.index
            for t in svc.touchpoints:
                if self.plan.touchpoints[t].touchpoint == touchpoint:
                    return t
        return None

    def key_of(self, index: int) -> tuple[str, str, str | None]:
        """(rule, service, touchpoint) of a machine index."""
        if index >= 0:
            tp = self.plan.touchpoints[index]
            return "touchpoint", tp.service, tp.touchpoint
        return "service", self.plan.services[-1 - index].service, None

    def owner_of(self, index: int) -> str | None:
        """The catalog owner of a machine's touchpoint (inherited from its service) or
        service: its alerts' addressee."""
        if index >= 0:
            return self.plan.touchpoints[index].owner
        return self.plan.services[-1 - index].owner

    def record(
        self,
        unit: str,
        index: int,
        rule: AlertRule,
        score: float | None,
        sample: int,
        transition: Transition,
        kpis: list[KpiResult] | None,
        inhibited: bool,
        now: int,
    ) -> dict[str, Any]:
        kind, service, touchpoint = self.key_of(index)
        top: list[dict[str, Any]] = []
        excluded: list[str] = []
        if kpis is not None and index >= 0:
            tp = self.plan.touchpoints[index]
            present = sum(
                self.plan.kpis[k].weight
                for k, r in zip(tp.kpis, kpis, strict=True)
                if r.points is not None
            )
            for k, r in zip(tp.kpis, kpis, strict=True):
                kpi = self.plan.kpis[k]
                if r.points is None:
                    excluded.append(kpi.kpi)
                    continue
                weight = kpi.weight / present
                top.append(
                    {
                        "kpi": kpi.kpi,
                        "value": r.value,
                        "points": r.points,
                        "weight": weight,
                        "denominator": r.denominator,
                        "shortfall": weight * (5.0 - r.points),
                    }
                )
            top.sort(key=lambda item: (-item["shortfall"], item["kpi"]))
        return {
            "alert_id": alert_id(kind, unit, service, touchpoint),
            "rule": kind,
            "state": transition.kind,
            "unit": unit,
            "service": service,
            "touchpoint": touchpoint,
            "score": score,
            "threshold": rule.threshold,
            "class": classify(score),
            "window": "rolling",
            "window_start_ms": now - self.span_ms,
            "window_end_ms": now,
            "sample": sample,
            "started_at_ms": transition.started_at_ms,
            "resolved_at_ms": transition.resolved_at_ms,
            "acknowledged_by": transition.acknowledged_by,
            "inhibited": inhibited,
            "catalog_version": self.plan.version,
            "top_kpis": top,
            "excluded_kpis": excluded,
            "owner": self.owner_of(index),
            "programme": None,
            "indicator": None,
        }
