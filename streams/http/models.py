"""The HTTP API's requests and answers as pydantic models: the routes validate their query
parameters and bodies with them, and the OpenAPI document (`streams.http.openapi`) is
generated from them, so the document cannot drift from what the routes accept."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from streams.core.events import (
    ID_PATTERN,
    MAX_EVENT_TIME_MS,
    SERVICES,
    TOUCHPOINT_PATTERN,
    UNIT_PATTERN,
)
from streams.core.records import LEVELS
from streams.core.windows import CALENDAR_KINDS
from streams.http.params import (
    ALERT_FILTERS,
    ALERT_ID_PATTERN,
    ALERT_STATES,
    BY_MAX_CHARS,
    BY_PATTERN,
    DEFAULT_LIMIT,
    MAX_LIMIT,
)

if TYPE_CHECKING:  # the choices are the domain's tuples; mypy sees plain strings
    Level = str
    WindowKind = str
    Service = str
    AlertState = str
    AlertFilter = str
else:
    Level = Literal[LEVELS]
    WindowKind = Literal[CALENDAR_KINDS]
    Service = Literal[SERVICES]
    AlertState = Literal[ALERT_STATES]
    AlertFilter = Literal[ALERT_FILTERS]

Unit = Annotated[str, StringConstraints(pattern=UNIT_PATTERN.pattern)]
Touchpoint = Annotated[str, StringConstraints(pattern=TOUCHPOINT_PATTERN.pattern)]
CatalogId = Annotated[str, StringConstraints(pattern=ID_PATTERN.pattern)]
AlertId = Annotated[str, StringConstraints(pattern=ALERT_ID_PATTERN)]


def _decimal(value: Any) -> Any:
    # a query string's integer: ASCII digits only (no sign, blanks, "1e3" or "1_000")
    if isinstance(value, str) and not (value.isascii() and value.isdigit() and len(value) <= 10):
        raise ValueError("expected a decimal integer")
    return value


def _whole(value: Any) -> Any:
    # JSON's 1.0 is the integer 1 too; true is not
    return int(value) if type(value) is float and value.is_integer() else value


QueryInt = Annotated[int, BeforeValidator(_decimal)]
EventTimeMs = Annotated[
    int, Field(strict=True, ge=0, le=MAX_EVENT_TIME_MS - 1), BeforeValidator(_whole)
]


# -- requests -------------------------------------------------------------------------------


class Query(BaseModel):
    """A route's query parameters: each known (`extra="forbid"`), each a string to parse."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def filters(self, *without: str) -> dict[str, str]:
        """The parameters given, as the view's filters."""
        return {k: v for k, v in self.model_dump(exclude_none=True).items() if k not in without}


class ScoresQuery(Query):
    level: Level | None = Field(None, description="level")
    unit: Unit | None = Field(None, description="unit code")
    service: Service | None = Field(None, description="service")
    touchpoint: Touchpoint | None = Field(None, description="touchpoint id")
    window: WindowKind | None = Field(None, description="window kind")
    limit: QueryInt = Field(
        DEFAULT_LIMIT,
        ge=1,
        le=MAX_LIMIT,
        description="records per page (ordered by window, unit, then top-down)",
    )
    offset: QueryInt = Field(0, ge=0, le=10**9, description="records to skip")


class UnitQuery(Query):
    window: WindowKind | None = Field(None, description="only this window kind")


class StandingsQuery(Query):
    window: WindowKind = Field("month", description="window kind")
    service: Service | None = Field(None, description="rank by this service's CEMI")
    touchpoint: Touchpoint | None = Field(
        None, description="rank by this touchpoint's CEMI (with service)"
    )


class AlertsQuery(Query):
    state: AlertFilter = Field("active", description="active = firing or acknowledged")
    unit: Unit | None = Field(None, description="unit code")
    service: Service | None = Field(None, description="service")


class ProgrammesQuery(Query):
    window: WindowKind = Field("month", description="window kind")
    unit: Unit | None = Field(None, description="unit code")
    programme: CatalogId | None = Field(None, description="programme id")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AckBody(Body):
    by: Annotated[
        str, StringConstraints(min_length=1, max_length=BY_MAX_CHARS, pattern=BY_PATTERN)
    ] = Field("api", description="who acknowledges (printable ASCII, not all blank)")


class ProgrammeUpdateBody(Body):
    unit: Unit
    indicator: CatalogId
    value: float = Field(strict=True, description="the indicator's measured value")
    event_time: EventTimeMs | None = Field(
        None, description="when it was measured (epoch ms; default now)"
    )


# -- answers --------------------------------------------------------------------------------


class Error(BaseModel):
    error: str


class Score(BaseModel):
    """A score record (`cx.cemi.scores`, `cx.cemi.kpis`): the Avro schemas' fields."""

    level: Level
    window: str
    window_start: str
    unit: str | None
    score: float | None
    class_: str | None = Field(alias="class")
    window_start_ms: int | None = None
    service: str | None = None
    touchpoint: str | None = None
    kpi: str | None = None
    delta_prev: float | None = None
    delta_network: float | None = None
    target_ratio: float | None = None
    target_met: bool | None = None
    target_gap_points: float | None = None
    coverage: float | None = None
    value: float | None = None
    numerator: float | None = None
    denominator: float | None = None
    catalog_version: str | None = None
    revision: int | None = None
    final: bool | None = None
    published_at_ms: int | None = None
    newest_event_ingest_ms: int | None = None


class ScoresPage(BaseModel):
    count: int
    total: int
    offset: int | None = None
    limit: int | None = None
    scores: list[Score]


class UnitTree(BaseModel):
    window: str
    window_start: str | None = None
    score: float | None = None
    class_: str | None = Field(None, alias="class")
    services: dict[str, Any]


class UnitTrees(BaseModel):
    unit: str
    windows: dict[str, UnitTree]


class Stats(BaseModel):
    consumed: int
    dead_lettered: dict[str, int]
    scored: int
    duplicates: int
    late: int
    replayed: int
    published_records: int | None = None
    partitions: list[int] | None = None


class Standing(BaseModel):
    unit: str
    score: float
    class_: str | None = Field(None, alias="class")
    rank: int
    rank_prev: int | None = None
    delta_prev: float | None = None


class Standings(BaseModel):
    """A standings record (`cx.cemi.standings`)."""

    level: Literal["standings"]
    window: str
    window_start: str
    window_start_ms: int | None = None
    service: str | None = None
    touchpoint: str | None = None
    units: list[Standing]
    final: bool
    revision: int
    catalog_version: str | None = None
    published_at_ms: int | None = None


class Alert(BaseModel):
    """An alert record (`cx.cemi.alerts`), the latest of its alert."""

    alert_id: str
    rule: str
    state: AlertState
    unit: str
    service: str
    touchpoint: str | None
    score: float | None = None
    threshold: float | None = None
    class_: str | None = Field(None, alias="class")
    started_at_ms: int | None = None
    resolved_at_ms: int | None = None
    acknowledged_by: str | None = None
    inhibited: bool | None = None
    owner: str | None = None
    window: str | None = None
    window_start_ms: int | None = None
    window_end_ms: int | None = None
    sample: int | None = None
    catalog_version: str | None = None
    top_kpis: list[dict[str, Any]] | None = None
    excluded_kpis: list[str] | None = None
    programme: str | None = None
    indicator: str | None = None
    published_at_ms: int | None = None


class AlertsPage(BaseModel):
    count: int
    alerts: list[Alert]


class AckAccepted(BaseModel):
    accepted: bool
    ack: dict[str, Any]


class Programme(BaseModel):
    """A programme record (`cx.cemi.programmes`)."""

    level: Literal["programme"]
    window: str
    window_start: str
    unit: str
    programme: str
    indicator: str
    owner: str | None = None
    value: float | None
    target: float
    attainment: float | None
    on_track: bool | None
    effect: list[dict[str, Any]]
    window_start_ms: int | None = None
    catalog_version: str | None = None
    revision: int | None = None
    final: bool | None = None
    published_at_ms: int | None = None


class ProgrammesPage(BaseModel):
    count: int
    programmes: list[Programme]


class UpdateAccepted(BaseModel):
    accepted: bool
    event: dict[str, Any]


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool]
