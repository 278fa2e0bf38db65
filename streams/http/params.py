"""What the HTTP API accepts and how it answers: the routes' constants, query parameters
checked against them, and the JSON answer (errors included)."""

from __future__ import annotations

import logging
import re
from typing import Any, Final, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from streams.core.records import LEVELS

log = logging.getLogger(__name__)
Q = TypeVar("Q", bound=BaseModel)
B = TypeVar("B", bound=BaseModel)

PREFIX: Final = "/api/v1"
ALERT_STATES: Final = ("firing", "acknowledged", "resolved")
ALERT_FILTERS: Final = (*ALERT_STATES, "active", "all")  # active = firing or acknowledged
ALERT_ID_PATTERN: Final = r"^[0-9a-f]{1,64}$"
ALERT_ID: Final = re.compile(ALERT_ID_PATTERN)
BY_MAX_CHARS: Final = 64
BY_PATTERN: Final = r"^[ -~]*[!-~][ -~]*$"  # printable ASCII, not only spaces
BY: Final = re.compile(BY_PATTERN)
PROBE_INTERVAL_S: Final = 2.0
PROBE_TIMEOUT_S: Final = 2.5
REGISTER_WITHIN_S: Final = 30.0
YIELD_EVERY: Final = 10_000  # records looked at between yields to the event loop
LEVEL_ORDER: Final = {level: i for i, level in enumerate(reversed(LEVELS))}  # top-down
JSON: Final = "application/json"
HEADERS: Final = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class BadRequest(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type=JSON,
        headers={**HEADERS, **(headers or {})},
    )


def query(request: Any, model: type[Q]) -> Q:
    """The query parameters as `model` (`streams.http.models`), each known, given once and
    valid; else 400 naming the bad one."""
    found: dict[str, str] = {}
    for name, value in request.query.items():
        if name not in model.model_fields:
            known = ", ".join(model.model_fields)
            raise BadRequest(400, f"unknown parameter {name!r}; known: {known}")
        if name in found:
            raise BadRequest(400, f"parameter {name!r} given more than once")
        found[name] = value
    try:
        return model.model_validate(found)
    except ValidationError as error:
        name = str(error.errors()[0]["loc"][0])
        raise BadRequest(400, f"invalid {name}: {found.get(name, '')[:64]!r}") from None


def body_as(body: dict[str, Any], model: type[B]) -> B:
    """A request's JSON object as `model`; else 400 naming the first bad field."""
    try:
        return model.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest(400, f"{where}: {first['msg']}") from None


DEFAULT_LIMIT: Final = 5_000
MAX_LIMIT: Final = 20_000
