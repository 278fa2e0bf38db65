"""Touchpoint event types, their fields, and the validation every event passes once.

This module is the single definition of what an event is: the batch scorer, the stream's
ingest, the catalog's predicate checks and the Avro schema test all read `EVENT_FIELDS`.
Validation works on plain dicts (decoded JSON or Avro) and returns the same dict, so the hot
path never builds model objects per event.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from math import isfinite
from typing import Any, Final

SERVICES: Final = ("mobile", "fixed_broadband", "mytv", "digital_personal", "digital_enterprise")
CHANNELS: Final = ("store", "call_center", "field", "web", "app", "chatbot", "social", "auto")
UNIT_PATTERN: Final = re.compile(r"^[A-Z][A-Z0-9_]{1,15}$")
TOUCHPOINT_PATTERN: Final = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
ID_PATTERN: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # catalog ids (programmes, ...)
# Printable ASCII without spaces: ids show up in dead letters and logs, so no control bytes.
EVENT_ID_PATTERN: Final = re.compile(r"^[\x21-\x7e]{1,128}$")
REF_PATTERN: Final = re.compile(r"^[\x20-\x7e]{1,256}$")
# 2100-01-01T00:00:00Z: a bound that catches seconds-vs-milliseconds and garbage timestamps.
MAX_EVENT_TIME_MS: Final = 4_102_444_800_000


class InvalidEvent(ValueError):
    """An event that cannot be scored; `code` is a stable reason code for counters and DLQ."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text


@dataclass(frozen=True)
class FieldSpec:
    """One event field: its type (`str`, `int`, `float`, `bool`, `enum`), bounds and nullability."""

    name: str
    type: str
    nullable: bool = False
    symbols: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    pattern: re.Pattern[str] | None = None
    doc: str = ""

    @property
    def numeric(self) -> bool:
        return self.type in ("int", "float")


def _enum(name: str, symbols: tuple[str, ...], doc: str) -> FieldSpec:
    return FieldSpec(name, "enum", symbols=symbols, doc=doc)


IDENTITY_FIELDS: Final = (
    FieldSpec(
        "event_id", "str", pattern=EVENT_ID_PATTERN, doc="Unique id, used for de-duplication"
    ),
    FieldSpec(
        "event_time",
        "int",
        minimum=0,
        maximum=MAX_EVENT_TIME_MS - 1,
        doc="When it happened, epoch milliseconds UTC",
    ),
    FieldSpec("unit", "str", pattern=UNIT_PATTERN, doc="Business unit (province) code"),
)
# every touchpoint event (and the subscriber base) carries these too; a programme update not
COMMON_FIELDS: Final = (
    *IDENTITY_FIELDS,
    _enum("service", SERVICES, "Service the event belongs to"),
    FieldSpec(
        "customer_ref",
        "str",
        pattern=REF_PATTERN,
        doc="Opaque, already pseudonymous customer reference; never published",
    ),
    _enum("channel", CHANNELS, "Channel the customer used"),
)

_TYPE_FIELDS: Final[dict[str, tuple[FieldSpec, ...]]] = {
    "order": (
        _enum("kind", ("new", "change", "upgrade", "relocate", "consult"), "Order kind"),
        _enum("status", ("submitted", "completed", "failed", "cancelled"), "Order status"),
        FieldSpec("lead_time_hours", "float", nullable=True, minimum=0, doc="Order to completion"),
    ),
    "install": (
        _enum("kind", ("install", "activation"), "Installation or activation"),
        _enum("status", ("completed", "failed", "rescheduled"), "Outcome"),
        FieldSpec("on_time", "bool", nullable=True, doc="Done on the promised date"),
        FieldSpec("first_time_right", "bool", nullable=True, doc="No second visit needed"),
        FieldSpec("delay_hours", "float", nullable=True, minimum=0, doc="Hours past the promise"),
    ),
    "ticket": (
        _enum("category", ("inquiry", "support", "fault", "complaint", "quality"), "Category"),
        _enum("status", ("opened", "resolved", "reopened"), "Ticket status"),
        FieldSpec("resolution_hours", "float", nullable=True, minimum=0, doc="Time to resolve"),
        FieldSpec("sla_met", "bool", nullable=True, doc="Resolved within the SLA"),
        FieldSpec(
            "first_response_minutes", "float", nullable=True, minimum=0, doc="Time to first answer"
        ),
    ),
    "payment": (
        _enum("kind", ("bill", "payment", "dispute"), "Bill issued, payment, or bill dispute"),
        _enum("status", ("succeeded", "failed"), "Outcome"),
        FieldSpec("amount_vnd", "int", minimum=0, doc="Amount in VND"),
        FieldSpec("on_time", "bool", nullable=True, doc="Bill issued / paid on time"),
    ),
    "cancellation": (
        _enum("status", ("requested", "retained", "completed"), "Cancellation step"),
        _enum(
            "reason",
            ("price", "quality", "support", "relocation", "competitor", "other"),
            "Reason given",
        ),
    ),
    "survey": (
        FieldSpec(
            "touchpoint", "str", pattern=TOUCHPOINT_PATTERN, doc="Touchpoint id the answer is about"
        ),
        FieldSpec("csat", "int", nullable=True, minimum=1, maximum=5, doc="Satisfaction 1-5"),
        FieldSpec("nps", "int", nullable=True, minimum=0, maximum=10, doc="Recommend 0-10"),
        FieldSpec(
            "ces", "int", nullable=True, minimum=1, maximum=7, doc="Effort 1-7, lower better"
        ),
    ),
    "subscriber_base": (
        FieldSpec(
            "active_subscribers",
            "int",
            minimum=0,
            doc="Active subscribers of the unit and service: a snapshot, not a count to add",
        ),
    ),
}
# Event types that are not touchpoint events: their own fields after the identity ones.
_OTHER_FIELDS: Final[dict[str, tuple[FieldSpec, ...]]] = {
    "programme_update": (
        FieldSpec("programme", "str", pattern=ID_PATTERN, doc="Programme id in the catalog"),
        FieldSpec("indicator", "str", pattern=ID_PATTERN, doc="The programme's indicator id"),
        FieldSpec(
            "value",
            "float",
            doc="The indicator's measured value at event_time: a snapshot, not a count to add",
        ),
    ),
}

EVENT_TYPES: Final = (*_TYPE_FIELDS, *_OTHER_FIELDS)
# Event types a KPI can read (subscriber_base only feeds the `rate` denominator, a
# programme_update a programme's indicator).
KPI_EVENT_TYPES: Final = tuple(t for t in _TYPE_FIELDS if t != "subscriber_base")
# snapshots: a value at a time, the latest at or before a window's end counts
SNAPSHOT_TYPES: Final = ("subscriber_base", "programme_update")
EVENT_FIELDS: Final[dict[str, dict[str, FieldSpec]]] = {
    **{t: {f.name: f for f in (*COMMON_FIELDS, *fields)} for t, fields in _TYPE_FIELDS.items()},
    **{t: {f.name: f for f in (*IDENTITY_FIELDS, *fields)} for t, fields in _OTHER_FIELDS.items()},
}


# Per type, the checks in field order: (name, nullable, kind code, argument). Kind codes keep
# the per-field work to one branch and a set lookup or a type test: no call per field.
_ENUM, _BOOL, _STR, _INT, _FLOAT = range(5)
_KIND_CODES: Final = {"enum": _ENUM, "bool": _BOOL, "str": _STR, "int": _INT, "float": _FLOAT}
Check = tuple[str, bool, int, Any, float | None, float | None]


def _check(spec: FieldSpec) -> Check:
    argument: Any = spec.pattern
    if spec.type == "enum":
        argument = frozenset(spec.symbols)
    elif spec.pattern is not None:
        argument = string_test(spec.pattern)
    return (spec.name, spec.nullable, _KIND_CODES[spec.type], argument, spec.minimum, spec.maximum)


# Printable-ASCII patterns, tested with str methods (C loops) instead of the regex engine:
# pattern -> (no space allowed, max length). `isprintable` on ASCII is exactly 0x20-0x7e.
_PRINTABLE: Final = {
    EVENT_ID_PATTERN.pattern: (True, 128),
    REF_PATTERN.pattern: (False, 256),
}
_MEMO_MAX: Final = 4_096  # distinct valid values remembered per field (units, touchpoints)


def string_test(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    """Whether a string fully matches `pattern`, as fast as the field allows: every event
    passes these (the event id and customer_ref are new each time, the unit and touchpoint
    are a few values seen again and again)."""
    printable = _PRINTABLE.get(pattern.pattern)
    if printable is not None:
        no_space, max_len = printable

        def test_printable(value: str) -> bool:
            return (
                0 < len(value) <= max_len
                and value.isascii()
                and value.isprintable()
                and not (no_space and " " in value)
            )

        return test_printable
    known: set[str] = set()
    fullmatch = pattern.fullmatch

    def test_memo(value: str) -> bool:
        if value in known:
            return True
        if fullmatch(value) is None:
            return False
        if len(known) >= _MEMO_MAX:
            known.clear()
        known.add(value)
        return True

    return test_memo


_CHECKS: Final[dict[str, tuple[Check, ...]]] = {
    t: tuple(_check(f) for f in fields.values()) for t, fields in EVENT_FIELDS.items()
}


def _problem(etype: str, name: str, kind: int, argument: Any, value: Any) -> InvalidEvent:
    """The error for a value that failed its check (off the hot path)."""
    code = "bad_unit" if name == "unit" else "bad_value"
    if kind == _ENUM:
        text = f"must be one of {tuple(sorted(argument))}"
    elif kind == _BOOL:
        text = "must be true or false"
    elif kind == _STR:
        pattern = EVENT_FIELDS[etype][name].pattern
        shown = pattern.pattern if pattern is not None else "its pattern"
        text = "must be a string" if type(value) is not str else f"does not match {shown}"
    elif kind == _INT:
        text = "must be an integer"
    else:
        text = "must be a finite number"
    return InvalidEvent(code, f"{etype}.{name} {text}")


def validate_event(obj: Any) -> dict[str, Any]:
    """Check a decoded event; return it, or raise InvalidEvent with a reason.

    Missing nullable fields are set to null (so readers can index every field). Unknown extra
    fields are ignored, so newer producers can add fields without breaking this reader.
    """
    if type(obj) is not dict:
        raise InvalidEvent("not_an_object", "an event must be a JSON/Avro object")
    etype = obj.get("type")
    if type(etype) is not str or (checks := _CHECKS.get(etype)) is None:
        raise InvalidEvent("unknown_type", f"type must be one of {EVENT_TYPES}, got {etype!r}")
    get = obj.get
    for name, nullable, kind, argument, lo, hi in checks:
        value = get(name)
        if value is None:
            if nullable:
                obj[name] = None
                continue
            raise InvalidEvent("missing_field", f"{etype}.{name} is required")
        if kind == _ENUM:
            if type(value) is str and value in argument:
                continue
        elif kind == _STR:
            # a full match (`$` alone would accept a trailing newline: "HPG\n")
            if type(value) is str and argument(value):
                continue
        elif kind == _BOOL:
            if value is True or value is False:
                continue
        else:
            t = type(value)
            if not (t is int or (t is float and kind == _FLOAT and isfinite(value))):
                raise _problem(etype, name, kind, argument, value)
            if lo is not None and value < lo:
                raise InvalidEvent("bad_value", f"{etype}.{name} must be >= {lo:g}")
            if hi is not None and value > hi:
                raise InvalidEvent("bad_value", f"{etype}.{name} must be <= {hi:g}")
            continue
        raise _problem(etype, name, kind, argument, value)
    return obj


def field_spec(event_type: str, field: str) -> FieldSpec | None:
    return EVENT_FIELDS.get(event_type, {}).get(field)


# --- customer_ref pseudonymisation (CEMI_CUSTOMER_REF_HMAC_KEY) -------------------------
# Scores, KPIs, alerts, late records and envelopes never carry customer_ref; the one place
# the ingest copies input bytes out is a dead letter, and these two functions are applied
# there when a key is set (off the hot path: dead letters are the exception).

_QUOTED: Final = re.compile(r"""b?(['"])(?:\\.|(?!\1).)*\1""", re.DOTALL)


def pseudonymous_ref(value: Any, key: bytes) -> str:
    """A keyed HMAC-SHA256 of a customer_ref (hex): stable per key, not reversible."""
    data = value.encode() if type(value) is str else repr(value).encode()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def pseudonymise(obj: dict[str, Any], key: bytes) -> dict[str, Any]:
    """A copy of a decoded event whose customer_ref (whatever its type) is replaced."""
    if "customer_ref" not in obj or obj["customer_ref"] is None:
        return dict(obj)
    return {**obj, "customer_ref": pseudonymous_ref(obj["customer_ref"], key)}


def without_literals(text: str) -> str:
    """An error text with quoted literals (which may echo input bytes) replaced by '…'."""
    return _QUOTED.sub("'…'", text)
