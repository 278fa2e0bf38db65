"""The OpenAPI 3 document of the HTTP API (served at /api/v1/openapi.json)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from streams.core.events import (
    ID_PATTERN,
    MAX_EVENT_TIME_MS,
    SERVICES,
    TOUCHPOINT_PATTERN,
    UNIT_PATTERN,
)
from streams.core.records import LEVELS
from streams.core.windows import CALENDAR_KINDS

if TYPE_CHECKING:
    from streams.settings import Settings

from streams.http.params import (
    ALERT_FILTERS,
    ALERT_ID_PATTERN,
    ALERT_STATES,
    BY_MAX_CHARS,
    BY_PATTERN,
    DEFAULT_LIMIT,
    JSON,
    MAX_LIMIT,
    PREFIX,
)

log = logging.getLogger(__name__)


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(description, {"$ref": "#/components/schemas/Error"})


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _param(name: str, schema: dict[str, Any], description: str, where: str = "query") -> Any:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


def _get(
    operation_id: str,
    summary: str,
    parameters: list[Any],
    ok: dict[str, Any],
    errors: dict[str, Any],
    security: list[Any] | None = None,
) -> dict[str, Any]:
    operation = {
        "operationId": operation_id,
        "summary": summary,
        "parameters": parameters,
        "responses": {"200": ok, **errors},
    }
    if security is not None:
        operation["security"] = security
    return {"get": operation}


def _post(
    operation_id: str,
    summary: str,
    path_param: Any,
    body: dict[str, Any],
    body_required: bool,
    accepted: tuple[str, dict[str, Any]],
    errors: dict[str, str],
) -> dict[str, Any]:
    """A token-protected POST: a JSON body, 202 when accepted, the usual errors and these."""
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "security": [{"bearer": []}],
            "parameters": [path_param],
            "requestBody": {"required": body_required, "content": {JSON: {"schema": body}}},
            "responses": {
                "202": _json(*accepted),
                "401": _error("no bearer token"),
                "403": _error("wrong token, or no CEMI_API_TOKEN configured"),
                "413": _error("body too large"),
                "503": _error("the worker is starting"),
                **{status: _error(text) for status, text in errors.items()},
            },
        }
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3 description of these routes (served at /api/v1/openapi.json)."""
    string, integer, boolean = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
    nullable_string = {"type": ["string", "null"]}
    nullable_number = {"type": ["number", "null"]}
    unit = {"type": "string", "pattern": UNIT_PATTERN.pattern}
    window = {"type": "string", "enum": list(CALENDAR_KINDS)}
    service = {"type": "string", "enum": list(SERVICES)}
    read_security: list[Any] = [{"bearer": []}] if settings.api_read_auth else []
    bad = {"400": _error("bad parameter")}
    if settings.api_read_auth:
        bad.update({"401": _error("no bearer token"), "403": _error("wrong bearer token")})
    score = _obj(
        ["level", "window", "window_start", "unit", "score", "class"],
        level={"type": "string", "enum": list(LEVELS)},
        window=string,
        window_start=string,
        window_start_ms=integer,
        unit=nullable_string,
        service=nullable_string,
        touchpoint=nullable_string,
        kpi=nullable_string,
        score=nullable_number,
        **{"class": nullable_string},
        delta_prev=nullable_number,
        delta_network=nullable_number,
        target_ratio=nullable_number,
        target_met={"type": ["boolean", "null"]},
        target_gap_points=nullable_number,
        coverage={"type": "number"},
        value=nullable_number,
        numerator={"type": "number"},
        denominator={"type": "number"},
        catalog_version=string,
        revision=integer,
        final=boolean,
    )
    alert = _obj(
        ["alert_id", "rule", "state", "unit", "service", "touchpoint"],
        alert_id=string,
        rule=string,
        state={"type": "string", "enum": list(ALERT_STATES)},
        unit=string,
        service=string,
        touchpoint=nullable_string,
        score=nullable_number,
        threshold={"type": "number"},
        **{"class": nullable_string},
        started_at_ms={"type": ["integer", "null"]},
        resolved_at_ms={"type": ["integer", "null"]},
        acknowledged_by=nullable_string,
        inhibited=boolean,
    )
    tree = _obj(
        ["window", "services"],
        window=string,
        window_start=string,
        score=nullable_number,
        **{"class": nullable_string},
        services={"type": "object"},
    )
    standing = _obj(
        ["unit", "score", "rank"],
        unit=string,
        score={"type": "number"},
        **{"class": nullable_string},
        rank=integer,
        rank_prev={"type": ["integer", "null"]},
        delta_prev=nullable_number,
    )
    standings = _obj(
        ["level", "window", "window_start", "units", "final", "revision"],
        level={"type": "string", "enum": ["standings"]},
        window=string,
        window_start=string,
        window_start_ms=integer,
        service=nullable_string,
        touchpoint=nullable_string,
        units={"type": "array", "items": standing},
        final=boolean,
        revision=integer,
        catalog_version=string,
        published_at_ms={"type": ["integer", "null"]},
    )
    readiness = _obj(
        ["ready", "checks"],
        ready=boolean,
        checks={"type": "object", "additionalProperties": boolean},
    )
    paths = {
        f"{PREFIX}/scores": _get(
            "getScores",
            "Current scores (newest day and month window per unit)",
            [
                _param("level", {"type": "string", "enum": list(LEVELS)}, "level"),
                _param("unit", unit, "unit code"),
                _param("service", service, "service"),
                _param(
                    "touchpoint",
                    {"type": "string", "pattern": TOUCHPOINT_PATTERN.pattern},
                    "touchpoint id",
                ),
                _param("window", window, "window kind"),
                _param(
                    "limit",
                    {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_LIMIT,
                        "default": DEFAULT_LIMIT,
                    },
                    "records per page (ordered by window, unit, then top-down)",
                ),
                _param(
                    "offset",
                    {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0},
                    "records to skip",
                ),
            ],
            _json(
                "the matching score records",
                _obj(
                    ["count", "total", "scores"],
                    count=integer,
                    total=integer,
                    offset=integer,
                    limit=integer,
                    scores={"type": "array", "items": {"$ref": "#/components/schemas/Score"}},
                ),
            ),
            bad,
            read_security,
        ),
        f"{PREFIX}/units/{{unit}}": _get(
            "getUnit",
            "A unit's tree: service -> touchpoint -> KPI, per window",
            [
                _param("unit", unit, "unit code", "path"),
                _param("window", window, "only this window kind"),
            ],
            _json(
                "the unit's tree per window kind",
                _obj(
                    ["unit", "windows"],
                    unit=string,
                    windows={"type": "object", "additionalProperties": tree},
                ),
            ),
            {**bad, "404": _error("no scores for this unit")},
            read_security,
        ),
        f"{PREFIX}/stats": _get(
            "getStats",
            "The worker's pipeline counts (open, like /metrics)",
            [],
            _json(
                "counts since the partitions' states began",
                _obj(
                    ["consumed", "dead_lettered", "scored", "duplicates", "late", "replayed"],
                    consumed=integer,
                    dead_lettered={"type": "object", "additionalProperties": integer},
                    scored=integer,
                    duplicates=integer,
                    late=integer,
                    replayed=integer,
                    published_records=integer,
                    partitions={"type": "array", "items": integer},
                ),
            ),
            bad,
        ),
        f"{PREFIX}/standings": _get(
            "getStandings",
            "The units ranked by score in the newest window of a kind: by unit CEMI (no "
            "service), by a service's CEMI, or by a touchpoint's (service and touchpoint)",
            [
                _param("window", window, "window kind (default month)"),
                _param("service", service, "rank by this service's CEMI"),
                _param(
                    "touchpoint",
                    {"type": "string", "pattern": TOUCHPOINT_PATTERN.pattern},
                    "rank by this touchpoint's CEMI (with service)",
                ),
            ],
            _json("the standings record", {"$ref": "#/components/schemas/Standings"}),
            {**bad, "404": _error("no standings for that window and key yet")},
            read_security,
        ),
        f"{PREFIX}/alerts": _get(
            "getAlerts",
            "Alerts (latest record per alert)",
            [
                _param(
                    "state",
                    {"type": "string", "enum": list(ALERT_FILTERS), "default": "active"},
                    "active = firing or acknowledged (default)",
                ),
                _param("unit", unit, "unit code"),
                _param("service", service, "service"),
            ],
            _json(
                "the matching alerts",
                _obj(
                    ["count", "alerts"],
                    count=integer,
                    alerts={"type": "array", "items": {"$ref": "#/components/schemas/Alert"}},
                ),
            ),
            bad,
            read_security,
        ),
        f"{PREFIX}/alerts/{{alert_id}}/ack": _post(
            "ackAlert",
            "Acknowledge a firing alert (it stays firing until it resolves)",
            _param("alert_id", {"type": "string", "pattern": ALERT_ID_PATTERN}, "id", "path"),
            {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "by": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": BY_MAX_CHARS,
                        "pattern": BY_PATTERN,
                    }
                },
            },
            False,
            (
                "the acknowledgement was sent",
                _obj(["accepted", "ack"], accepted=boolean, ack={"type": "object"}),
            ),
            {"400": "bad id or body", "404": "no such alert", "409": "the alert is resolved"},
        ),
        f"{PREFIX}/programmes": _get(
            "getProgrammes",
            "Action programmes: the newest window's record of a kind per unit, programme and "
            "indicator (value, target in force, attainment, on_track, effect)",
            [
                _param("window", window, "window kind (default month)"),
                _param("unit", unit, "unit code"),
                _param("programme", {"type": "string", "pattern": ID_PATTERN.pattern}, "id"),
            ],
            _json(
                "the matching programme records",
                _obj(
                    ["count", "programmes"],
                    count=integer,
                    programmes={"type": "array", "items": {"type": "object"}},
                ),
            ),
            bad,
            read_security,
        ),
        f"{PREFIX}/programmes/{{programme}}/updates": _post(
            "reportProgrammeUpdate",
            "Report a programme indicator's value (a programme_update event)",
            _param("programme", {"type": "string", "pattern": ID_PATTERN.pattern}, "id", "path"),
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["unit", "indicator", "value"],
                "properties": {
                    "unit": {"type": "string", "pattern": UNIT_PATTERN.pattern},
                    "indicator": {"type": "string", "pattern": ID_PATTERN.pattern},
                    "value": {"type": "number"},
                    "event_time": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": MAX_EVENT_TIME_MS - 1,
                    },
                },
            },
            True,
            (
                "the update was sent to the programme updates' topic",
                _obj(["accepted", "event"], accepted=boolean, event={"type": "object"}),
            ),
            {"400": "bad body", "404": "no such programme, or no such indicator of it"},
        ),
        "/healthz": _get(
            "healthz", "Liveness", [], _json("the worker serves requests", {"type": "object"}), {}
        ),
        "/readyz": _get(
            "readyz",
            "Readiness: partitions recovered, broker reachable, outputs read",
            [],
            _json("ready", readiness),
            {"503": _json("not ready", readiness)},
        ),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CEMI scorer API",
            "version": "1",
            "description": "Current CEMI scores, unit trees and alerts, from any worker.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": _obj(["error"], error=string),
                "Score": score,
                "Alert": alert,
                "Standings": standings,
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
