"""The OpenAPI 3.1 document of the HTTP API (served at /api/v1/openapi.json), generated from
the pydantic models the routes validate with (`streams.http.models`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from streams.http.models import (
    AckAccepted,
    AckBody,
    AlertId,
    AlertsPage,
    AlertsQuery,
    CatalogId,
    Error,
    Health,
    ProgrammesPage,
    ProgrammesQuery,
    ProgrammeUpdateBody,
    Readiness,
    ScoresPage,
    ScoresQuery,
    Standings,
    StandingsQuery,
    Stats,
    Unit,
    UnitQuery,
    UnitTrees,
    UpdateAccepted,
)
from streams.http.params import JSON, PREFIX

if TYPE_CHECKING:
    from streams.settings import Settings

REF: Final = "#/components/schemas/{model}"
ANSWERS: Final = (
    Error,
    ScoresPage,
    UnitTrees,
    Stats,
    Standings,
    AlertsPage,
    AckAccepted,
    ProgrammesPage,
    UpdateAccepted,
    Health,
    Readiness,
)
BODIES: Final = (AckBody, ProgrammeUpdateBody)


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": REF.format(model=model.__name__)}


def _content(description: str, model: type[BaseModel]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(model)}}}


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema: an optional one's `anyOf [X, null]` is X (a query parameter is
    absent, never null), without pydantic's titles."""
    alternatives = [s for s in schema.get("anyOf", ()) if s.get("type") != "null"]
    if len(alternatives) == 1:
        schema = {**alternatives[0], **{k: v for k, v in schema.items() if k != "anyOf"}}
    dropped = ("title", "description") + (("default",) if schema.get("default") is None else ())
    return {k: v for k, v in schema.items() if k not in dropped}


def _query(model: type[BaseModel]) -> list[dict[str, Any]]:
    properties = model.model_json_schema()["properties"]
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": field.description or name,
            "schema": _plain(properties[name]),
        }
        for name, field in model.model_fields.items()
    ]


def _path(name: str, annotation: Any, description: str) -> dict[str, Any]:
    schema = _plain(TypeAdapter(annotation).json_schema())
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _errors(**texts: str) -> dict[str, Any]:
    return {status.lstrip("_"): _content(text, Error) for status, text in texts.items()}


def _operation(
    operation_id: str,
    summary: str,
    ok: dict[str, Any],
    errors: dict[str, Any],
    parameters: list[dict[str, Any]] | None = None,
    security: list[Any] | None = None,
    body: type[BaseModel] | None = None,
    ok_status: str = "200",
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "parameters": parameters or [],
        "responses": {ok_status: ok, **errors},
    }
    if body is not None:
        required = bool(body.model_json_schema().get("required"))
        operation["requestBody"] = {
            "required": required,
            "content": {JSON: {"schema": _ref(body)}},
        }
    if security is not None:
        operation["security"] = security
    return operation


def components() -> dict[str, Any]:
    """The models' JSON schemas, answers as they are serialised, bodies as they are read."""
    _, top = models_json_schema(
        [(m, "serialization") for m in ANSWERS] + [(m, "validation") for m in BODIES],
        ref_template=REF,
    )
    return dict(top["$defs"])


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 description of these routes."""
    read: list[Any] = [{"bearer": []}] if settings.api_read_auth else []
    write: list[Any] = [{"bearer": []}]
    bad = _errors(_400="bad parameter")
    if settings.api_read_auth:
        bad.update(_errors(_401="no bearer token", _403="wrong bearer token"))
    refused = _errors(_401="no bearer token", _403="wrong bearer token", _413="body too large")
    starting = _errors(_503="the worker is starting")
    paths = {
        f"{PREFIX}/scores": {
            "get": _operation(
                "getScores",
                "Current scores (newest window of each kind per unit)",
                _content("the matching score records", ScoresPage),
                bad,
                _query(ScoresQuery),
                read,
            )
        },
        f"{PREFIX}/units/{{unit}}": {
            "get": _operation(
                "getUnit",
                "A unit's tree: service -> touchpoint -> KPI, per window",
                _content("the unit's tree per window kind", UnitTrees),
                {**bad, **_errors(_404="no scores for this unit")},
                [_path("unit", Unit, "unit code"), *_query(UnitQuery)],
                read,
            )
        },
        f"{PREFIX}/stats": {
            "get": _operation(
                "getStats",
                "The worker's pipeline counts (open, like /metrics)",
                _content("counts since the partitions' states began", Stats),
                bad,
            )
        },
        f"{PREFIX}/standings": {
            "get": _operation(
                "getStandings",
                "The units ranked by score in the newest window of a kind: by unit CEMI (no "
                "service), by a service's CEMI, or by a touchpoint's (service and touchpoint)",
                _content("the standings record", Standings),
                {**bad, **_errors(_404="no standings for that window and key yet")},
                _query(StandingsQuery),
                read,
            )
        },
        f"{PREFIX}/alerts": {
            "get": _operation(
                "getAlerts",
                "Alerts (latest record per alert)",
                _content("the matching alerts", AlertsPage),
                bad,
                _query(AlertsQuery),
                read,
            )
        },
        f"{PREFIX}/alerts/{{alert_id}}/ack": {
            "post": _operation(
                "ackAlert",
                "Acknowledge a firing alert (it stays firing until it resolves)",
                _content("the acknowledgement was sent", AckAccepted),
                {
                    **_errors(_400="bad id or body", _404="no such alert"),
                    **_errors(_409="the alert is resolved"),
                    **refused,
                    **starting,
                },
                [_path("alert_id", AlertId, "alert id")],
                write,
                AckBody,
                "202",
            )
        },
        f"{PREFIX}/programmes": {
            "get": _operation(
                "getProgrammes",
                "Action programmes: the newest window's record of a kind per unit, programme "
                "and indicator (value, target in force, attainment, on_track, effect)",
                _content("the matching programme records", ProgrammesPage),
                bad,
                _query(ProgrammesQuery),
                read,
            )
        },
        f"{PREFIX}/programmes/{{programme}}/updates": {
            "post": _operation(
                "reportProgrammeUpdate",
                "Report a programme indicator's value (a programme_update event)",
                _content("the update was sent to the programme updates' topic", UpdateAccepted),
                {
                    **_errors(_400="bad body"),
                    **_errors(_404="no such programme, or no such indicator of it"),
                    **refused,
                    **starting,
                },
                [_path("programme", CatalogId, "programme id")],
                write,
                ProgrammeUpdateBody,
                "202",
            )
        },
        "/healthz": {
            "get": _operation("healthz", "Liveness", _content("the worker serves", Health), {})
        },
        "/readyz": {
            "get": _operation(
                "readyz",
                "Readiness: partitions recovered, broker reachable, outputs read",
                _content("ready", Readiness),
                {"503": _content("not ready", Readiness)},
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CEMI scorer API",
            "version": "1",
            "description": "Current CEMI scores, unit trees, standings, programmes and alerts, "
            "from any worker.",
        },
        "paths": paths,
        "components": {
            "schemas": components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
