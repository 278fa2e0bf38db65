"""The scoring catalog: pydantic models, the `defaults` shorthand, loading, and error paths.

An invalid catalog is refused whole, never half-loaded; every problem is reported as
`dotted.path: message` (e.g. `services.mobile.touchpoints.install.kpis.on_time.scale: values
must increase`). One module: the models' validators check each other's fields (a programme
names services, touchpoints and KPIs of the catalog), and the error paths follow the models.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Mapping
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streams.core.events import KPI_EVENT_TYPES, SERVICES, UNIT_PATTERN, field_spec
from streams.core.predicates import check_predicate

Weight = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Score = Annotated[float, Field(ge=1, le=5, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
# a team or role name (an alert's addressee, a Prometheus label, an Alertmanager route)
Owner = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
KpiKind = Literal["ratio", "mean", "nps", "rate"]
EventType = Literal["order", "install", "ticket", "payment", "cancellation", "survey"]
assert set(EventType.__args__) == set(KPI_EVENT_TYPES)  # type: ignore[attr-defined]


class CatalogError(ValueError):
    """The catalog is invalid; `problems` lists `(path, message)` pairs, all of them."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{path}: {message}" for path, message in problems))


class PathError(ValueError):
    """A validator's error about a part of the value (`subpath`) rather than all of it."""

    def __init__(self, subpath: str, message: str) -> None:
        super().__init__(message)
        self.subpath = subpath


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Kpi(_Strict):
    weight: Weight
    kind: KpiKind
    event: EventType
    where: dict[str, Any] = Field(default_factory=dict)
    numerator: dict[str, Any] | None = None
    field: str | None = None
    scale: list[tuple[Finite, Finite]]
    target: Finite | None = None
    description: Annotated[str, Field(min_length=1)]
    owner: Owner | None = None

    @field_validator("scale")
    @classmethod
    def _scale_is_monotone(cls, scale: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if len(scale) < 2:
            raise ValueError("needs at least 2 breakpoints [value, points]")
        for i, (_, points) in enumerate(scale):
            if not 1 <= points <= 5:
                raise PathError(f"{i}", f"points must be within [1, 5], got {points:g}")
        if any(b[0] <= a[0] for a, b in itertools.pairwise(scale)):
            raise ValueError("values must increase")
        return scale

    @model_validator(mode="after")
    def _kind_rules(self) -> Kpi:
        if self.kind == "ratio" and self.numerator is None:
            raise PathError("numerator", "a ratio KPI needs a numerator predicate")
        if self.kind != "ratio" and self.numerator is not None:
            raise PathError("numerator", f"only ratio KPIs have a numerator, this is {self.kind}")
        if self.kind in ("mean", "nps"):
            if self.field is None:
                raise PathError("field", f"a {self.kind} KPI needs a numeric field")
            spec = field_spec(self.event, self.field)
            if spec is None:
                raise PathError("field", f"unknown field for event type {self.event!r}")
            if not spec.numeric:
                raise PathError("field", f"{self.field} is {spec.type}, not numeric")
        elif self.field is not None:
            raise PathError("field", f"only mean and nps KPIs read a field, this is {self.kind}")
        for name in ("where", "numerator"):
            predicate = getattr(self, name)
            for subpath, message in check_predicate(predicate or {}, self.event):
                raise PathError(f"{name}.{subpath}", message)
        return self


class AlertOverrides(_Strict):
    """Per touchpoint or service: what differs from the catalog's `alerts` defaults."""

    min_sample: Annotated[int, Field(ge=1)] | None = None
    min_kpi_sample: Annotated[int, Field(ge=1)] | None = None
    hold_ms: Annotated[int, Field(ge=0)] | None = None
    hysteresis: Annotated[float, Field(ge=0, le=4, allow_inf_nan=False)] | None = None


class AlertDefaults(_Strict):
    """Alert rule defaults (SPEC §7); thresholds are on the 1..5 scale."""

    threshold: Score = 3.0
    min_sample: Annotated[int, Field(ge=1)] = 20
    # On the short alerting window a KPI with fewer events than this counts as not occurred,
    # so a handful of answers cannot drag a touchpoint below its threshold.
    min_kpi_sample: Annotated[int, Field(ge=1)] = 5
    hold_ms: Annotated[int, Field(ge=0)] = 300_000
    hysteresis: Annotated[float, Field(ge=0, le=4, allow_inf_nan=False)] = 0.2


class Touchpoint(_Strict):
    name: str | None = None
    phase: str | None = None
    stage: str | None = None
    weight: Weight
    threshold: Score | None = None
    target: Score | None = None
    alert: AlertOverrides | None = None
    owner: Owner | None = None
    kpis: dict[str, Kpi]

    @field_validator("kpis")
    @classmethod
    def _kpi_ids(cls, kpis: dict[str, Kpi]) -> dict[str, Kpi]:
        return _check_ids(kpis, "KPI")


class Service(_Strict):
    weight: Weight
    target: Score | None = None
    threshold: Score | None = None
    alert: AlertOverrides | None = None
    owner: Owner | None = None
    touchpoints: dict[str, Touchpoint]

    @field_validator("touchpoints")
    @classmethod
    def _touchpoint_ids(cls, touchpoints: dict[str, Touchpoint]) -> dict[str, Touchpoint]:
        return _check_ids(touchpoints, "touchpoint")


class UnitWeight(_Strict):
    weight: Weight = 1.0


class Defaults(_Strict):
    touchpoints: dict[str, dict[str, Any]] = Field(default_factory=dict)


class ProgrammePhase(_Strict):
    due: date  # a local date: the target is due at its end
    target: Finite


class Indicator(_Strict):
    """A programme's group-2 KPI: a measured value with phased targets."""

    description: Annotated[str, Field(min_length=1)]
    direction: Literal["higher", "lower"]
    phases: list[ProgrammePhase]

    @field_validator("phases")
    @classmethod
    def _phases_in_order(cls, phases: list[ProgrammePhase]) -> list[ProgrammePhase]:
        if not phases:
            raise ValueError("at least one phase is needed")
        for i, (before, after) in enumerate(itertools.pairwise(phases), start=1):
            if after.due <= before.due:
                raise PathError(f"{i}.due", f"{after.due} is not after {before.due}")
        return phases


class Improvement(_Strict):
    """A group-1 KPI a programme is meant to move."""

    service: str
    touchpoint: str
    kpi: str


class Programme(_Strict):
    """An action programme (source §III.3.4): an owner, a period, the group-1 KPIs it is
    meant to move, and its group-2 indicators with phased targets."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    owner: Owner
    units: list[str] | None = None  # None: every unit
    start: date  # local dates, both included
    end: date
    improves: list[Improvement] = Field(default_factory=list)
    indicators: dict[str, Indicator]

    @field_validator("units")
    @classmethod
    def _unit_codes(cls, units: list[str] | None) -> list[str] | None:
        for i, code in enumerate(units or ()):
            if not UNIT_PATTERN.match(code):
                raise PathError(str(i), f"unit code must match {UNIT_PATTERN.pattern}")
        return units

    @field_validator("indicators")
    @classmethod
    def _indicator_ids(cls, indicators: dict[str, Indicator]) -> dict[str, Indicator]:
        return _check_ids(indicators, "indicator")

    @model_validator(mode="after")
    def _period(self) -> Programme:
        if self.end < self.start:
            raise PathError("end", f"{self.end} is before the start {self.start}")
        return self


class Catalog(_Strict):
    version: Annotated[str, Field(min_length=1, max_length=64)]
    timezone: str = "Asia/Ho_Chi_Minh"
    target: Score | None = None
    units: dict[str, UnitWeight] = Field(default_factory=dict)
    alerts: AlertDefaults = Field(default_factory=AlertDefaults)
    defaults: Defaults | None = None
    services: dict[str, Service]
    programmes: dict[str, Programme] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        return expand_defaults(data)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {name!r}") from None
        return name

    @field_validator("units")
    @classmethod
    def _unit_codes(cls, units: dict[str, UnitWeight]) -> dict[str, UnitWeight]:
        for code in units:
            if not UNIT_PATTERN.match(code):
                raise PathError(code, f"unit code must match {UNIT_PATTERN.pattern}")
        return units

    @field_validator("services")
    @classmethod
    def _known_services(cls, services: dict[str, Service]) -> dict[str, Service]:
        if not services:
            raise ValueError("at least one service is needed")
        for name in services:
            if name not in SERVICES:
                raise PathError(name, f"unknown service; use one of {SERVICES}")
        return services

    @model_validator(mode="after")
    def _journey_shape(self) -> Catalog:
        """Phases and stages, where the catalog gives them, form one journey: every
        touchpoint in one stage (the same in every service), every stage in one phase. A
        catalog that gives none has no journey map; one that gives some gives them all."""
        placed = [
            (f"services.{svc_id}.touchpoints.{tp_id}", tp_id, tp)
            for svc_id, svc in self.services.items()
            for tp_id, tp in svc.touchpoints.items()
        ]
        if all(tp.phase is None and tp.stage is None for _, _, tp in placed):
            return self
        stage_of: dict[str, tuple[str, str]] = {}  # touchpoint -> (stage, where)
        phase_of: dict[str, tuple[str, str]] = {}  # stage -> (phase, where)
        for path, tp_id, tp in placed:
            for name in ("phase", "stage"):
                if getattr(tp, name) is None:
                    raise PathError(
                        f"{path}.{name}", f"missing: the other touchpoints give a {name}"
                    )
            assert tp.stage is not None and tp.phase is not None
            stage, where = stage_of.setdefault(tp_id, (tp.stage, path))
            if stage != tp.stage:
                raise PathError(
                    f"{path}.stage", f"{tp.stage!r}, but {where} puts {tp_id} in {stage!r}"
                )
            phase, where = phase_of.setdefault(tp.stage, (tp.phase, path))
            if phase != tp.phase:
                raise PathError(
                    f"{path}.phase",
                    f"{tp.phase!r}, but {where} puts stage {tp.stage!r} in phase {phase!r}",
                )
        return self

    @field_validator("programmes")
    @classmethod
    def _programme_ids(cls, programmes: dict[str, Programme]) -> dict[str, Programme]:
        for key in programmes:
            if not IDENTIFIER.match(key):
                raise PathError(key, f"programme id must match {IDENTIFIER.pattern}")
        return programmes

    @model_validator(mode="after")
    def _programme_references(self) -> Catalog:
        """A programme names known units (where the catalog lists its units) and KPIs."""
        for pid, programme in self.programmes.items():
            path = f"programmes.{pid}"
            for i, unit in enumerate(programme.units or ()):
                if self.units and unit not in self.units:
                    raise PathError(f"{path}.units.{i}", f"unknown unit {unit!r}")
            for i, kpi in enumerate(programme.improves):
                where = f"{path}.improves.{i}"
                service = self.services.get(kpi.service)
                if service is None:
                    raise PathError(f"{where}.service", f"unknown service {kpi.service!r}")
                touchpoint = service.touchpoints.get(kpi.touchpoint)
                if touchpoint is None:
                    raise PathError(
                        f"{where}.touchpoint", f"{kpi.service} has no touchpoint {kpi.touchpoint!r}"
                    )
                if kpi.kpi not in touchpoint.kpis:
                    raise PathError(f"{where}.kpi", f"{kpi.touchpoint} has no KPI {kpi.kpi!r}")
        return self

    def unit_weight(self, unit: str) -> float:
        configured = self.units.get(unit)
        return configured.weight if configured else 1.0


def _check_ids(items: dict[str, Any], what: str) -> dict[str, Any]:
    if not items:
        raise ValueError(f"at least one {what} is needed")
    for key in items:
        if not IDENTIFIER.match(key):
            raise PathError(key, f"{what} id must match {IDENTIFIER.pattern}")
    return items


def _deep_merge(base: Any, override: Any) -> Any:
    """Override wins; mappings merge key by key; a None value removes the key."""
    if not isinstance(base, Mapping) or not isinstance(override, Mapping):
        return copy.deepcopy(override)
    merged = dict(copy.deepcopy(base))
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif key in merged:
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def expand_defaults(data: Any) -> Any:
    """Give every service the `defaults.touchpoints`, merged under its own touchpoints.

    A service's touchpoint mapping deep-merges onto the default of the same id (KPIs by id);
    `null` removes a default touchpoint (or KPI) from that service.
    """
    if not isinstance(data, Mapping):
        return data
    defaults = data.get("defaults")
    shared = defaults.get("touchpoints") if isinstance(defaults, Mapping) else None
    services = data.get("services")
    if not isinstance(shared, Mapping) or not isinstance(services, Mapping):
        return data
    expanded = dict(data)
    expanded["services"] = {
        name: (
            {**svc, "touchpoints": _deep_merge(shared, svc.get("touchpoints") or {})}
            if isinstance(svc, Mapping)
            else svc
        )
        for name, svc in services.items()
    }
    return expanded


def _problems(error: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        cause = (item.get("ctx") or {}).get("error")
        message = str(item["msg"]).removeprefix("Value error, ")
        if isinstance(cause, PathError):
            loc.extend(cause.subpath.split("."))
            message = str(cause)
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append((".".join(loc) or "(catalog)", message))
    return problems


def parse_catalog(data: Any) -> Catalog:
    """Validate already-parsed catalog data; raise CatalogError naming every bad field."""
    try:
        return Catalog.model_validate(data)
    except ValidationError as error:
        raise CatalogError(_problems(error)) from None


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read a YAML or JSON catalog file (the packaged default when `path` is None)."""
    if path is None:
        text = resources.files("streams.data").joinpath("default_catalog.yaml").read_text()
        name = "default_catalog.yaml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise CatalogError([("(file)", f"cannot read {path}: {error.strerror}")]) from None
        name = str(path)
    try:
        data = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise CatalogError([("(file)", f"{name} is not valid YAML/JSON: {error}")]) from None
    return parse_catalog(data)
