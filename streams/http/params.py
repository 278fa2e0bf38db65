"""What the HTTP API accepts and how it answers: the routes' constants, query parameters
checked against them, and the JSON answer (errors included)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

import orjson
from aiohttp import web

from streams.core.events import SERVICES, TOUCHPOINT_PATTERN, UNIT_PATTERN
from streams.core.records import LEVELS
from streams.core.windows import CALENDAR_KINDS

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

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


def query_params(request: Any, allowed: dict[str, Callable[[str], bool]]) -> dict[str, str]:
    """The query parameters, each known, given once and valid; else 400 naming the bad one."""
    found: dict[str, str] = {}
    for name, value in request.query.items():
        check = allowed.get(name)
        if check is None:
            raise BadRequest(400, f"unknown parameter {name!r}; known: {', '.join(allowed)}")
        if name in found:
            raise BadRequest(400, f"parameter {name!r} given more than once")
        if not check(value):
            raise BadRequest(400, f"invalid {name}: {value[:64]!r}")
        found[name] = value
    return found


def one_of(values: Iterable[str]) -> Callable[[str], bool]:
    allowed = frozenset(values)
    return allowed.__contains__


def matches(pattern: Any) -> Callable[[str], bool]:
    return lambda value: pattern.match(value) is not None


SCORE_PARAMS: Final = {
    "level": one_of(LEVELS),
    "unit": matches(UNIT_PATTERN),
    "service": one_of(SERVICES),
    "touchpoint": matches(TOUCHPOINT_PATTERN),
    "window": one_of(CALENDAR_KINDS),
}


def integer(low: int, high: int) -> Callable[[str], bool]:
    return lambda value: value.isdecimal() and len(value) <= 10 and low <= int(value) <= high


DEFAULT_LIMIT: Final = 5_000
MAX_LIMIT: Final = 20_000
PAGE_PARAMS: Final = {"limit": integer(1, MAX_LIMIT), "offset": integer(0, 10**9)}
