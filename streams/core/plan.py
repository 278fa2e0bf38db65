"""The catalog compiled for scoring: flat KPI/touchpoint/service tables and per-event matchers.

Everything that can be decided once per catalog is decided here, so that per event only the
KPIs of that (event type, service) are looked at, through pre-compiled predicates.

An event's *contribution* to a KPI is `(kpi_index, a, b)`; it always adds 1 to the KPI's
denominator count `n`. Accumulators are `[n, a, b]` per KPI index:

| kind  | n                          | a                    | b             |
| ----- | -------------------------- | -------------------- | ------------- |
| ratio | events matching `where`    | of those, numerator  | 0             |
| mean  | events with field not null | sum of field         | 0             |
| nps   | answers with field         | promoters (>= 9)     | detractors (<= 6) |
| rate  | events matching `where`    | 0                    | 0             |

Accumulators only ever add, so two halves of an event set merge into the whole: the
stream relies on that to fold pre-aggregated envelopes (`streams.core.accumulators`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final

from streams.core.accumulators import Contribution
from streams.core.alerts import AlertRule
from streams.core.catalog import AlertDefaults, AlertOverrides, Catalog, Kpi
from streams.core.events import field_spec
from streams.core.predicates import Predicate, compile_predicate
from streams.core.programmes import compile_programmes
from streams.core.scales import Scale

KINDS: Final = ("ratio", "mean", "nps", "rate")
_CACHE_LIMIT: Final = 4096  # per (event type, service); hostile input cannot grow it


@dataclass(frozen=True, slots=True)
class KpiDef:
    index: int
    service: str
    touchpoint: str
    kpi: str
    kind: str
    event: str
    weight: float
    scale: Scale
    target: float | None
    description: str
    owner: str | None  # its own, else its touchpoint's (inherited downward)


def _rule(
    defaults: AlertDefaults, threshold: float | None, own: AlertOverrides | None
) -> AlertRule:
    """The alert rule of a touchpoint or service: its own values over the catalog's."""
    pick = own or AlertOverrides()
    return AlertRule(
        threshold=threshold if threshold is not None else defaults.threshold,
        min_sample=pick.min_sample if pick.min_sample is not None else defaults.min_sample,
        hold_ms=pick.hold_ms if pick.hold_ms is not None else defaults.hold_ms,
        hysteresis=pick.hysteresis if pick.hysteresis is not None else defaults.hysteresis,
        min_kpi_sample=pick.min_kpi_sample
        if pick.min_kpi_sample is not None
        else defaults.min_kpi_sample,
    )


@dataclass(frozen=True, slots=True)
class TouchpointDef:
    index: int
    service: str
    touchpoint: str
    weight: float
    threshold: float | None
    target: float | None
    kpis: tuple[int, ...]
    name: str | None
    phase: str | None
    stage: str | None
    rule: AlertRule
    owner: str | None  # its own, else its service's


@dataclass(frozen=True, slots=True)
class ServiceDef:
    index: int
    service: str
    weight: float
    threshold: float | None
    target: float | None
    touchpoints: tuple[int, ...]
    rule: AlertRule
    owner: str | None


@dataclass(frozen=True, slots=True)
class _KpiMatch:
    index: int
    kind: str
    where: Predicate
    numerator: Predicate
    field: str | None


def _predicate_fields(kpi: Kpi) -> set[str]:
    fields = set(kpi.where) | set(kpi.numerator or {})
    if kpi.kind == "nps" and kpi.field:
        fields.add(kpi.field)  # promoter/detractor depends on the answer itself
    return fields


def _bounded(event_type: str, field: str) -> bool:
    """Can this field's value be part of a cache key (few distinct values)?"""
    spec = field_spec(event_type, field)
    if spec is None or spec.type == "float":
        return False
    if spec.type == "int":
        return spec.minimum is not None and spec.maximum is not None
    return True  # enums, bools, and pattern-checked short strings (cache size is capped)


class _EventMatcher:
    """The KPIs one (event type, service) can feed, and what an event gives each of them.

    What an event contributes depends only on the fields its predicates read (plus, for mean
    KPIs, the field averaged). When those are all of few values, the resolution is memoised
    by the tuple of their values: one dict lookup per event instead of a predicate per KPI.
    """

    def __init__(self, event_type: str, matches: list[tuple[_KpiMatch, Kpi]]) -> None:
        self._matches = tuple(m for m, _ in matches)
        fields = sorted(set().union(*(_predicate_fields(k) for _, k in matches)))
        cacheable = all(_bounded(event_type, f) for f in fields)
        self._key = itemgetter(*fields) if cacheable and fields else None
        self._cache: dict[Any, tuple[tuple[Contribution, ...], tuple[tuple[int, str], ...]]] = {}

    def _resolve(
        self, e: Mapping[str, Any]
    ) -> tuple[tuple[Contribution, ...], tuple[tuple[int, str], ...]]:
        fixed: list[Contribution] = []
        read: list[tuple[int, str]] = []  # mean KPIs: (index, field) to read per event
        for m in self._matches:
            if not m.where(e):
                continue
            if m.kind == "ratio":
                fixed.append((m.index, 1.0 if m.numerator(e) else 0.0, 0.0))
            elif m.kind == "rate":
                fixed.append((m.index, 0.0, 0.0))
            elif m.kind == "nps":
                value = e.get(m.field)  # type: ignore[arg-type]
                if value is not None:
                    fixed.append((m.index, float(value >= 9), float(value <= 6)))
            else:
                read.append((m.index, m.field))  # type: ignore[arg-type]
        return tuple(fixed), tuple(read)

    def __call__(self, e: Mapping[str, Any]) -> list[Contribution]:
        if self._key is None:
            fixed, read = self._resolve(e)
        else:
            key = self._key(e)
            found = self._cache.get(key)
            if found is None:
                found = self._resolve(e)
                if len(self._cache) < _CACHE_LIMIT:
                    self._cache[key] = found
            fixed, read = found
        if not read:
            return list(fixed)
        out = list(fixed)
        for index, field in read:
            value = e.get(field)
            if value is not None:
                out.append((index, float(value), 0.0))
        return out


class ScoringPlan:
    """A validated catalog, flattened and compiled. Immutable; build once per catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.version = catalog.version
        kpis: list[KpiDef] = []
        touchpoints: list[TouchpointDef] = []
        services: list[ServiceDef] = []
        matches: dict[tuple[str, str], list[tuple[_KpiMatch, Kpi]]] = {}
        for service_name, service in catalog.services.items():
            tp_indices = []
            for tp_name, tp in service.touchpoints.items():
                tp_owner = tp.owner or service.owner
                kpi_indices = []
                for kpi_name, kpi in tp.kpis.items():
                    index = len(kpis)
                    kpis.append(
                        KpiDef(
                            index=index,
                            service=service_name,
                            touchpoint=tp_name,
                            kpi=kpi_name,
                            kind=kpi.kind,
                            event=kpi.event,
                            weight=kpi.weight,
                            scale=Scale(kpi.scale),
                            target=kpi.target,
                            description=kpi.description,
                            owner=kpi.owner or tp_owner,
                        )
                    )
                    kpi_indices.append(index)
                    match = _KpiMatch(
                        index,
                        kpi.kind,
                        compile_predicate(kpi.where),
                        compile_predicate(kpi.numerator or {}),
                        kpi.field,
                    )
                    matches.setdefault((kpi.event, service_name), []).append((match, kpi))
                tp_indices.append(len(touchpoints))
                touchpoints.append(
                    TouchpointDef(
                        index=len(touchpoints),
                        service=service_name,
                        touchpoint=tp_name,
                        weight=tp.weight,
                        threshold=tp.threshold,
                        target=tp.target,
                        kpis=tuple(kpi_indices),
                        name=tp.name,
                        phase=tp.phase,
                        stage=tp.stage,
                        rule=_rule(catalog.alerts, tp.threshold, tp.alert),
                        owner=tp_owner,
                    )
                )
            services.append(
                ServiceDef(
                    index=len(services),
                    service=service_name,
                    weight=service.weight,
                    threshold=service.threshold,
                    target=service.target,
                    touchpoints=tuple(tp_indices),
                    rule=_rule(catalog.alerts, service.threshold, service.alert),
                    owner=service.owner,
                )
            )
        self.kpis: tuple[KpiDef, ...] = tuple(kpis)
        self.touchpoints: tuple[TouchpointDef, ...] = tuple(touchpoints)
        self.services: tuple[ServiceDef, ...] = tuple(services)
        self.service_index: dict[str, int] = {s.service: s.index for s in services}
        self.programmes = compile_programmes(catalog)
        self._matchers: dict[tuple[str, str], _EventMatcher] = {
            key: _EventMatcher(key[0], found) for key, found in matches.items()
        }
        # Rate KPIs divide by the unit's subscriber base of their service.
        self.rate_services: frozenset[str] = frozenset(k.service for k in kpis if k.kind == "rate")

    def contributions(self, event: Mapping[str, Any]) -> list[Contribution]:
        """What a validated event adds to which KPIs (empty when the catalog scores none)."""
        service = event.get("service")  # none: not a touchpoint event
        matcher = self._matchers.get((event["type"], service)) if service else None
        return [] if matcher is None else matcher(event)
