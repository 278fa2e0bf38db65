"""Hostile input for the fuzz tests: each message is invalid by construction (never by asking
the validator), labelled with its category.

`Malformed(seed).messages(n)` yields (event type whose topic gets it, value or None, category);
`made_up_units(n)` gives valid events of n distinct invented unit codes (refused by the
distinct-unit cap, not by validation). Every customer_ref here starts with `RAWREF`, so a
test can search output bytes for raw references.
"""

from __future__ import annotations

import math
import random
import string
import time
from collections.abc import Iterator
from typing import Any, Final

import orjson

from streams.core.events import EVENT_FIELDS, EVENT_TYPES, MAX_EVENT_TIME_MS, FieldSpec
from streams.wire.codec import encode
from streams.wire.schemas import SchemaStore

RAW_REF: Final = "RAWREF"
# (category, weight): how often each kind of hostile message is drawn
CATEGORIES: Final = (
    ("random_bytes", 10),
    ("truncated_avro", 10),
    ("wrong_fingerprint", 6),
    ("avro_non_finite", 5),
    ("avro_out_of_range", 5),
    ("json_wrong_type", 14),
    ("json_missing_field", 8),
    ("json_null_required", 5),
    ("json_out_of_range", 8),
    ("json_bad_enum", 5),
    ("json_unknown_type", 3),
    ("json_not_object", 3),
    ("json_nan_literal", 3),
    ("json_control_chars", 4),
    ("escaped_control_chars", 4),
    ("future_time", 3),
    ("beyond_2100", 2),
    ("empty", 2),
    ("null_value", 2),
    ("deep_nesting", 1),
    ("too_large_70k", 1),
)
ONE_MB: Final = 1_000_000


def base_event(rng: random.Random, etype: str, serial: int) -> dict[str, Any]:
    """A valid event of `etype` (the starting point of every mutation)."""
    event: dict[str, Any] = {
        "type": etype,
        "event_id": f"bad-{serial}",
        "event_time": 1_793_000_000_000 + rng.randrange(10**8),  # Oct/Nov 2026
        "unit": "HPG",
        "service": "mobile",
        "customer_ref": f"{RAW_REF}{serial:08d}",
        "channel": "app",
    }
    if etype == "programme_update":  # the default catalog's: valid by the catalog too
        event.update(programme=PROGRAMME, indicator=INDICATOR)
    for name, spec in EVENT_FIELDS[etype].items():
        if name in event or name == "type":
            continue
        event[name] = _valid_value(rng, spec)
    return event


PROGRAMME, INDICATOR = "install_recovery_hpg", "technicians_trained_share"


def _valid_value(rng: random.Random, spec: FieldSpec) -> Any:
    if spec.type == "enum":
        return rng.choice(spec.symbols)
    if spec.type == "bool":
        return rng.random() < 0.5
    if spec.type == "str":
        return "install" if spec.name == "touchpoint" else "x"
    low = spec.minimum if spec.minimum is not None else 0
    high = spec.maximum if spec.maximum is not None else low + 100
    if spec.type == "int":
        return rng.randint(int(low), int(high))
    return round(rng.uniform(low, high), 3)


def _wrong_type(rng: random.Random, spec: FieldSpec) -> Any:
    """A value of a type the field never accepts (bool is not a number here)."""
    if spec.type in ("str", "enum"):
        return rng.choice([1, 2.5, True, [], {"a": 1}, ["x"]])
    if spec.type == "int":
        return rng.choice(["1", 1.5, True, [], {}, "NaN"])
    if spec.type == "float":
        return rng.choice(["1.0", True, [], {}, "NaN", "Infinity"])
    return rng.choice([1, 0, "true", "yes", [], {}])  # bool


class Malformed:
    def __init__(self, seed: int, store: SchemaStore | None = None) -> None:
        self.rng = random.Random(seed)
        self.store = store or SchemaStore()
        self.serial = 0
        names = [c for c, _ in CATEGORIES]
        weights = [w for _, w in CATEGORIES]
        self._draw = lambda: self.rng.choices(names, weights)[0]

    def _event(self, etype: str | None = None) -> dict[str, Any]:
        self.serial += 1
        return base_event(self.rng, etype or self.rng.choice(EVENT_TYPES), self.serial)

    def _avro(self, event: dict[str, Any]) -> bytes:
        return encode(self.store.current_event(event["type"]), event)

    def messages(self, count: int) -> Iterator[tuple[str, bytes | None, str]]:
        for _ in range(count):
            category = self._draw()
            etype, value = getattr(self, category)()
            yield etype, value, category

    def one_megabyte(self) -> tuple[str, bytes, str]:
        event = self._event("order")
        event["padding"] = "p" * ONE_MB
        return "order", orjson.dumps(event), "one_megabyte"

    # --- categories: each returns (event type of the topic, value) -------------------------

    def random_bytes(self) -> tuple[str, bytes]:
        return self.rng.choice(EVENT_TYPES), self.rng.randbytes(self.rng.randint(1, 300))

    def truncated_avro(self) -> tuple[str, bytes]:
        event = self._event()
        avro = self._avro(event)
        return event["type"], avro[: self.rng.randrange(1, len(avro))]

    def wrong_fingerprint(self) -> tuple[str, bytes]:
        event = self._event()
        avro = self._avro(event)
        return event["type"], avro[:2] + self.rng.randbytes(8) + avro[10:]

    def _numeric_field(self, event: dict[str, Any], kind: str | None = None) -> FieldSpec | None:
        specs = [
            s
            for s in EVENT_FIELDS[event["type"]].values()
            if s.numeric and (kind is None or s.type == kind)
        ]
        return self.rng.choice(specs) if specs else None

    def avro_non_finite(self) -> tuple[str, bytes]:
        event = self._event(self.rng.choice(["order", "install", "ticket"]))
        spec = self._numeric_field(event, "float")
        assert spec is not None
        event[spec.name] = self.rng.choice([math.nan, math.inf, -math.inf])
        return event["type"], self._avro(event)

    def _out_of_range(self, event: dict[str, Any]) -> None:
        bounded = [
            s
            for s in EVENT_FIELDS[event["type"]].values()
            if s.numeric and (s.minimum is not None or s.maximum is not None)
        ]
        spec = self.rng.choice(bounded)
        if spec.maximum is not None and (spec.minimum is None or self.rng.random() < 0.5):
            event[spec.name] = int(spec.maximum) + self.rng.randint(1, 1000)
        else:
            assert spec.minimum is not None
            event[spec.name] = int(spec.minimum) - self.rng.randint(1, 1000)
        if spec.type == "float" and self.rng.random() < 0.5:
            event[spec.name] = float(event[spec.name])

    def avro_out_of_range(self) -> tuple[str, bytes]:
        # Avro int/long carry negative numbers and numbers past the maxima the validator has
        event = self._event(self.rng.choice(["survey", "payment", "order"]))
        self._out_of_range(event)
        if event["event_time"] > MAX_EVENT_TIME_MS:  # keep it a long
            event["event_time"] = MAX_EVENT_TIME_MS + 1
        return event["type"], self._avro(event)

    def json_wrong_type(self) -> tuple[str, bytes]:
        event = self._event()
        spec = self.rng.choice(list(EVENT_FIELDS[event["type"]].values()))
        event[spec.name] = _wrong_type(self.rng, spec)
        return event["type"], orjson.dumps(event)

    def json_missing_field(self) -> tuple[str, bytes]:
        event = self._event()
        required = [s.name for s in EVENT_FIELDS[event["type"]].values() if not s.nullable]
        del event[self.rng.choice(required)]
        return event["type"], orjson.dumps(event)

    def json_null_required(self) -> tuple[str, bytes]:
        event = self._event()
        required = [s.name for s in EVENT_FIELDS[event["type"]].values() if not s.nullable]
        event[self.rng.choice(required)] = None
        return event["type"], orjson.dumps(event)

    def json_out_of_range(self) -> tuple[str, bytes]:
        event = self._event(self.rng.choice(["survey", "payment", "order", "ticket"]))
        self._out_of_range(event)
        return event["type"], orjson.dumps(event)

    def json_bad_enum(self) -> tuple[str, bytes]:
        with_enums = [
            t for t in EVENT_TYPES if any(s.type == "enum" for s in EVENT_FIELDS[t].values())
        ]
        event = self._event(self.rng.choice(with_enums))
        enums = [s.name for s in EVENT_FIELDS[event["type"]].values() if s.type == "enum"]
        event[self.rng.choice(enums)] = self.rng.choice(["", "bogus", "MOBILE", "store ", "✓"])
        return event["type"], orjson.dumps(event)

    def json_unknown_type(self) -> tuple[str, bytes]:
        event = self._event()
        if self.rng.random() < 0.3:
            del event["type"]
        else:
            event["type"] = self.rng.choice(["refund", "", "ORDER", 7, None, ["order"]])
        return self.rng.choice(EVENT_TYPES), orjson.dumps(event)

    def json_not_object(self) -> tuple[str, bytes]:
        value = self.rng.choice([b"[]", b"null", b"1", b'"order"', b"true", b"[{}]", b"3.5"])
        return self.rng.choice(EVENT_TYPES), value

    def json_nan_literal(self) -> tuple[str, bytes]:
        event = self._event("order")
        event["lead_time_hours"] = 1.5
        text = orjson.dumps(event).replace(b"1.5", self.rng.choice([b"NaN", b"Infinity"]))
        return "order", text

    def json_control_chars(self) -> tuple[str, bytes]:
        # raw control bytes inside a JSON string are not JSON
        event = self._event()
        text = orjson.dumps(event)
        control = bytes([self.rng.choice([0, 1, 7, 8, 10, 13, 27, 31])])
        return event["type"], text.replace(b'"app"', b'"a' + control + b'pp"', 1)

    def escaped_control_chars(self) -> tuple[str, bytes]:
        # valid JSON whose id fields carry control characters (ids end up in logs)
        event = self._event()
        names = [
            n for n in ("unit", "event_id", "customer_ref") if n in EVENT_FIELDS[event["type"]]
        ]
        name = self.rng.choice(names)
        control = self.rng.choice(["\x00", "\x07", "\n", "\x1b[31m", "\u2028", "\x7f"])
        event[name] = f"{event[name][:3]}{control}{event[name][3:]}"
        return event["type"], orjson.dumps(event)

    def future_time(self) -> tuple[str, bytes]:
        event = self._event()
        now_ms = int(time.time() * 1000)
        event["event_time"] = now_ms + 3 * 86_400_000 + self.rng.randrange(10**9)
        return event["type"], self._maybe_avro(event)

    def beyond_2100(self) -> tuple[str, bytes]:
        event = self._event()
        event["event_time"] = MAX_EVENT_TIME_MS + self.rng.randrange(10**12)
        return event["type"], self._maybe_avro(event)

    def _maybe_avro(self, event: dict[str, Any]) -> bytes:
        return self._avro(event) if self.rng.random() < 0.5 else orjson.dumps(event)

    def empty(self) -> tuple[str, bytes]:
        return self.rng.choice(EVENT_TYPES), b""

    def null_value(self) -> tuple[str, None]:
        return self.rng.choice(EVENT_TYPES), None

    def deep_nesting(self) -> tuple[str, bytes]:
        depth = self.rng.choice([600, 5_000, 20_000])
        return "order", b"[" * depth + b"]" * depth

    def too_large_70k(self) -> tuple[str, bytes]:
        event = self._event()
        event["note"] = "".join(self.rng.choices(string.ascii_letters, k=70_000))
        return event["type"], orjson.dumps(event)


def made_up_units(count: int, seed: int) -> list[dict[str, Any]]:
    """Valid events (JSON shape) of `count` distinct invented unit codes."""
    rng = random.Random(seed)
    codes: set[str] = set()
    while len(codes) < count:
        codes.add("Z" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=6)))
    events = []
    for i, code in enumerate(sorted(codes)):
        event = base_event(rng, "payment", 10_000_000 + i)
        event["event_id"] = f"unit-{i}"
        event["unit"] = code
        events.append(event)
    return events
