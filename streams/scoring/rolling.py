"""A unit's rolling window for alerting: its running sums, kept by adding the slice that
enters at each boundary and taking out the one that leaves, with what the evaluator
(`streams.scoring.alerting`) needs to skip the work that cannot change an alert: per
touchpoint and service, the events in the window (the quiet check), the touchpoints whose
score may have moved, and the alert machines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.core.accumulators import Accumulators, signed_add
from streams.core.alerts import AlertState


@dataclass
class UnitRolling:
    boundary: int  # the window is [boundary - span, boundary)
    sums: Accumulators = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)  # touchpoints whose score may have moved
    touchpoints: dict[int, tuple[float | None, int]] = field(default_factory=dict)
    services: dict[int, float | None] = field(default_factory=dict)
    machines: dict[int, AlertState] = field(default_factory=dict)  # tp index / -1 - service
    pending: set[int] = field(default_factory=set)  # indices of the machines in `pending`
    # services whose touchpoint scores were not kept up to date (quiet, or never computed)
    stale: set[int] | None = None  # None: all of them
    # For the quiet check, kept as slices move: the events of all KPIs in the window per
    # touchpoint index and per service index. None: the sums were changed without them (a
    # reload, a late event), so they are recounted and every touchpoint is re-scored.
    counts: list[float] | None = None  # by touchpoint index
    service_counts: list[float] = field(default_factory=list)  # by service index
    # the services with a machine beyond no_data (None: to be recomputed)
    active: set[int] | None = None
    # per service: its touchpoints whose entry in `touchpoints` has a score or a sample
    # (the others add nothing to the service's score; a service has up to 16)
    scoring: dict[int, set[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pending = {i for i, m in self.machines.items() if m.state == "pending"}

    def add(self, accumulators: Accumulators, sign: float, groups: KpiGroups) -> None:
        """A slice enters (sign 1) or leaves (-1) the window: its accumulators go into the
        sums and the counts. A touchpoint is to be re-scored only for a KPI that counts in
        its score before or after (at least min_kpi_sample events): a KPI below it on both
        sides changes neither its score nor its sample (most KPIs of a catch-up's slices)."""
        sums, counts, service_counts, dirty = (
            self.sums, self.counts, self.service_counts, self.dirty
        )  # fmt: skip
        if counts is None:  # recounted at the next evaluation, from the sums
            signed_add(sums, accumulators, sign)
            return
        # `streams.core.accumulators.signed_add`, inlined with the counts (at every slice
        # boundary). Two loops rather than a multiplication by the sign (x - n is x + -1.0 * n
        # exactly); counts are whole numbers: exact in a float.
        if sign > 0:
            for index, (n, a, b) in accumulators.items():
                t, s, floor = groups[index]
                acc = sums.get(index)
                if acc is None:
                    acc = sums[index] = [n, a, b]
                else:
                    acc[0] += n
                    acc[1] += a
                    acc[2] += b
                if acc[0] >= floor:
                    dirty.add(t)
                counts[t] += n
                service_counts[s] += n
        else:
            for index, (n, a, b) in accumulators.items():
                t, s, floor = groups[index]
                acc = sums.get(index)
                if acc is None:
                    sums[index] = [-n, -a, -b]
                else:
                    if acc[0] >= floor:
                        dirty.add(t)
                    acc[0] -= n
                    acc[1] -= a
                    acc[2] -= b
                counts[t] -= n
                service_counts[s] -= n

    def recount(self, groups: KpiGroups, touchpoints: int, services: int) -> None:
        """Counts from the sums, and every touchpoint with events to be re-scored."""
        counts = [0.0] * touchpoints
        service_counts = [0.0] * services
        for index, acc in self.sums.items():
            t, s, _ = groups[index]
            counts[t] += acc[0]
            service_counts[s] += acc[0]
            self.dirty.add(t)
        self.counts, self.service_counts = counts, service_counts


# KPI index -> (its touchpoint index, service index, the touchpoint's min_kpi_sample): every
# KPI of the plan has them
KpiGroups = dict[int, tuple[int, int, int]]
