"""The specialised Avro writers (`streams/wire/fast_writer.py`) behind `codec.encode`: byte for
byte what fastavro writes, for generated records of every schema in `schemas/` and of a schema
with every Avro type, and for the records the scorer really publishes; records that do not
match their schema raise; schemas with constructs the writers do not handle go to fastavro."""

from __future__ import annotations

import dataclasses
import enum
import math
from datetime import UTC, datetime
from io import BytesIO
from typing import Any

import orjson
import pytest
from fastavro import parse_schema, schemaless_writer
from fastavro.validation import validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.batch import Replay
from streams.contract.envelope import Entry
from streams.core.plan import ScoringPlan
from streams.scoring.outbox import late_record, unit_cap_record
from streams.settings import load_settings
from streams.tools.simulate.generator import Generator, Incident
from streams.topics import Topics
from streams.wire import fast_writer
from streams.wire.codec import InvalidRecord, encode
from streams.wire.fast_writer import INT_MAX, INT_MIN, LONG_MAX, LONG_MIN, compile_writer
from streams.wire.messages import OutputMessages
from streams.wire.outputs import OutputCodec
from streams.wire.schemas import SchemaStore, StoredSchema, single_object_header
from tests.factories import a_score_record

STORE = SchemaStore()
SCHEMAS = sorted(STORE.by_header.values(), key=lambda s: (s.name, s.path))
OUTPUTS = ("KpiWindow", "CemiScore", "Alert", "LateEvent", "DeadLetter")
EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# a record with every Avro type the writers handle, unions both ways round, named types reused
ALL_TYPES = {
    "type": "record",
    "name": "AllTypes",
    "namespace": "test.v1",
    "fields": [
        {"name": "n", "type": "null"},
        {"name": "b", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "dd", "type": {"type": "double"}},
        {"name": "by", "type": "bytes"},
        {"name": "s", "type": "string"},
        {"name": "e", "type": {"type": "enum", "name": "Colour", "symbols": ["red", "green"]}},
        {"name": "fx", "type": {"type": "fixed", "name": "Four", "size": 4}},
        {"name": "a", "type": {"type": "array", "items": "string"}},
        {"name": "m", "type": {"type": "map", "values": ["null", "long"]}},
        {
            "name": "inner",
            "type": {
                "type": "record",
                "name": "Inner",
                "fields": [
                    {"name": "x", "type": ["null", "double"], "default": None},
                    {"name": "colour", "type": "Colour"},
                ],
            },
        },
        {"name": "inners", "type": {"type": "array", "items": "Inner"}},
        {"name": "ub", "type": ["null", "boolean"]},
        {"name": "ui", "type": ["null", "int"]},
        {"name": "ul", "type": ["long", "null"]},
        {"name": "uf", "type": ["null", "float"]},
        {"name": "ud", "type": ["double", "null"]},
        {"name": "uby", "type": ["null", "bytes"]},
        {"name": "us", "type": ["string", "null"]},
        {"name": "ue", "type": ["null", "Colour"]},
        {"name": "ufx", "type": ["null", "Four"]},
        {
            "name": "one",
            "type": {"type": "record", "name": "One", "fields": [{"name": "v", "type": "long"}]},
        },
        {"name": "none", "type": {"type": "record", "name": "Empty", "fields": []}},
    ],
}
ALL_TYPES_SCHEMA = StoredSchema(
    "test.v1.AllTypes",
    "all_types.avsc",  # not read
    ALL_TYPES,
    parse_schema(ALL_TYPES),  # type: ignore[arg-type]
    "{}",
    single_object_header('"all-types"'),
)


def fastavro_bytes(schema: StoredSchema, record: Any) -> bytes:
    out = BytesIO()
    out.write(schema.header)
    schemaless_writer(out, schema.parsed, record)
    return out.getvalue()


def writer_of(schema: StoredSchema) -> fast_writer.Writer:
    writer = compile_writer(schema.parsed, schema.header)
    assert writer is not None, f"no specialised writer for {schema.name}"
    return writer


# --- values of a (parsed) schema ---------------------------------------------------------------

# around every power of two: each length of varint, both signs (zig-zag)
LONG_EDGES = [
    v
    for k in range(64)
    for v in (2**k - 1, 2**k, -(2**k), -(2**k) - 1)
    if LONG_MIN <= v <= LONG_MAX
]
INT_EDGES = [v for v in LONG_EDGES if INT_MIN <= v <= INT_MAX]


def _strings() -> st.SearchStrategy[str]:
    # unicode of every plane (no lone surrogates: not encodable in UTF-8, fastavro fails too),
    # now and then longer than the lookup tables and the cached lengths
    return st.text() | st.text(min_size=1020, max_size=1100) | st.sampled_from(["", "HPG", "é€😀"])


def _floats(width: int) -> st.SearchStrategy[Any]:
    # NaN, infinities and -0.0 included (bytes compared, not values); ints are written as floats
    exact = st.floats(width=width)  # type: ignore[arg-type]
    return exact | st.integers(-(2**53), 2**53)


def values(schema: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Valid Python values of a parsed schema, of the types the specialised writers take."""
    if isinstance(schema, list):
        return st.one_of([values(branch, named) for branch in schema])
    if isinstance(schema, str):
        if schema in named:
            return values(named[schema], named)
        kind, schema = schema, {"type": schema}
    else:
        kind = schema["type"]
    if kind in ("record", "enum", "fixed"):
        named.setdefault(schema["name"], schema)
    strategies: dict[str, Any] = {
        "null": lambda: st.none(),
        "boolean": st.booleans,
        "int": lambda: st.integers(INT_MIN, INT_MAX) | st.sampled_from(INT_EDGES),
        "long": lambda: (
            st.integers(LONG_MIN, LONG_MAX)
            | st.sampled_from(LONG_EDGES)
            | st.integers(1_700_000_000_000, 1_900_000_000_000)  # epoch milliseconds
        ),
        "float": lambda: _floats(32),
        "double": lambda: _floats(64),
        "bytes": lambda: st.binary() | st.binary(min_size=1020, max_size=1100),
        "string": _strings,
        "enum": lambda: st.sampled_from(schema["symbols"]),
        "fixed": lambda: st.binary(min_size=schema["size"], max_size=schema["size"]),
        "array": lambda: st.lists(values(schema["items"], named), max_size=4),
        "map": lambda: st.dictionaries(_strings(), values(schema["values"], named), max_size=4),
        "record": lambda: st.fixed_dictionaries(
            {f["name"]: values(f["type"], named) for f in schema["fields"]}
        ),
    }
    return strategies[kind]()  # type: ignore[no-any-return]


def records(schema: StoredSchema) -> st.SearchStrategy[dict[str, Any]]:
    return values(schema.parsed, {})


# --- byte-identical to fastavro ----------------------------------------------------------------


def test_every_schema_in_the_store_gets_a_specialised_writer() -> None:
    assert {s.name.rsplit(".", 1)[1] for s in SCHEMAS} >= set(OUTPUTS)
    for schema in [*SCHEMAS, ALL_TYPES_SCHEMA]:
        writer_of(schema)


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.path)
@EXAMPLES
@given(data=st.data())
def test_specialised_writers_write_what_fastavro_writes(
    schema: StoredSchema, data: st.DataObject
) -> None:
    record = data.draw(records(schema))
    expected = fastavro_bytes(schema, record)
    assert writer_of(schema)(record) == expected  # the specialised writer took it
    assert encode(schema, record) == expected


@EXAMPLES
@given(data=st.data())
def test_every_avro_type_is_written_as_fastavro_writes_it(data: st.DataObject) -> None:
    record = data.draw(records(ALL_TYPES_SCHEMA))
    expected = fastavro_bytes(ALL_TYPES_SCHEMA, record)
    assert writer_of(ALL_TYPES_SCHEMA)(record) == expected
    assert encode(ALL_TYPES_SCHEMA, record) == expected


def _published(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replay rows with the fields the stream adds when it publishes them."""
    out = []
    for i, row in enumerate(rows):
        start = int(datetime.fromisoformat(row["window_start"]).timestamp() * 1000)
        out.append(
            {
                **row,
                "window_start_ms": start,
                "revision": 1 + i % 3,
                "final": i % 4 == 0,
                "published_at_ms": 1_793_500_000_000 + i // 40,
                "newest_event_ingest_ms": None if i % 5 == 0 else 1_793_400_000_000 + i,
            }
        )
    return out


def test_the_records_the_scorer_publishes_are_written_as_fastavro_writes_them(
    default_plan: ScoringPlan,
) -> None:
    replay = Replay(default_plan)
    replay.add_lines(orjson.dumps(e) for e in Generator(seed=7).events(6000))
    rows = _published(replay.records("day") + replay.records("month"))
    outputs = OutputMessages(Topics(load_settings()), OutputCodec(STORE))
    kpi_schema, score_schema = STORE.current_record("KpiWindow"), STORE.current_record("CemiScore")
    kpi, score = writer_of(kpi_schema), writer_of(score_schema)
    assert {r["level"] for r in rows} >= {"kpi", "touchpoint", "service", "unit", "network"}
    for row in rows:
        is_kpi = row["level"] == "kpi"
        schema = kpi_schema if is_kpi else score_schema
        expected = fastavro_bytes(schema, row)
        assert (kpi if is_kpi else score)(row) == expected
        assert outputs.score_message(row)[1] == expected

    late = STORE.current_record("LateEvent")
    # an install backlog brings its recovery programme's updates: they have no service
    backlog = Incident("install_backlog", "HPG", 1_793_000_000_000, 1_793_100_000_000)
    generator = Generator(
        units=("HPG",), start_ms=1_793_000_000_000, span_ms=200_000_000, incidents=(backlog,)
    )
    events = list(generator.events(500))
    assert any(e["type"] == "programme_update" for e in events)
    for offset, event in enumerate(events):
        entry = Entry(
            event["unit"],
            f"cx.events#{offset % 6}",
            offset,
            event["event_id"],
            event["event_time"],
            event["event_time"] + 5,
            event["type"],
            event.get("service"),
            [],
        )
        record = late_record(entry, 1_793_500_000_000, 3_600_000)
        assert record == _late(entry)
        assert outputs.outbox_message("late", record)[1] == fastavro_bytes(late, _late(entry))
        dead = unit_cap_record(entry, 2, 1_793_500_000_000)
        value = outputs.outbox_message("dead", dead)[1]
        expected = {**dead, "original": orjson.dumps(dead["original"])}
        assert value == fastavro_bytes(STORE.current_record("DeadLetter"), expected)
        # the input events too (the producer encodes them with the event schemas)
        schema = STORE.current_event(event["type"])
        assert writer_of(schema)(event) == fastavro_bytes(schema, event)


def _late(entry: Entry) -> dict[str, Any]:
    topic, _, partition = entry.source.rpartition("#")
    return {
        "event_id": entry.event_id,
        "event_type": entry.type,
        "unit": entry.unit,
        "service": entry.service,
        "event_time": entry.event_time,
        "watermark_ms": 1_793_500_000_000,
        "allowed_lateness_ms": 3_600_000,
        "source_topic": topic,
        "source_partition": int(partition),
        "source_offset": entry.offset,
    }


def test_alerts_are_written_as_fastavro_writes_them(default_plan: ScoringPlan) -> None:
    from tests.scoring.test_alerting import backlog_events, fold_alerts

    alerts = fold_alerts(default_plan, backlog_events(payment_outage=True), size=2_000)
    assert alerts and any(a["top_kpis"] for a in alerts)
    schema = STORE.current_record("Alert")
    for alert in alerts:
        record = {**alert, "published_at_ms": 1_793_500_000_000}
        assert writer_of(schema)(record) == fastavro_bytes(schema, record)


# --- what the specialised writers do not take goes to fastavro -------------------------------


class Level(enum.StrEnum):
    KPI = "kpi"


class Small(enum.IntEnum):
    TWO = 2


@pytest.mark.parametrize(
    "change",
    [
        {"extra": object()},  # extra keys are ignored, as fastavro ignores them
        {"level": Level.KPI},  # str subclasses: their string value
        {"revision": Small.TWO},  # int subclasses: to fastavro
        {"coverage": 1},  # an int as a double
        {"score": 4},  # an int as a double, in a union
        {"unit": ("string", "HPG")},  # fastavro's tuple notation for union branches
    ],
    ids=repr,
)
def test_records_the_fast_path_does_not_take_are_written_by_fastavro(
    change: dict[str, Any],
) -> None:
    schema = STORE.current_record("CemiScore")
    record = {**a_score_record(), **change}
    assert encode(schema, record) == fastavro_bytes(schema, record)


def test_missing_fields_take_their_default_as_with_fastavro() -> None:
    schema = STORE.current_record("CemiScore")
    record = a_score_record()
    del record["coverage"], record["score"]  # defaults 0.0 and null
    assert encode(schema, record) == fastavro_bytes(schema, record)
    with pytest.raises(KeyError):
        writer_of(schema)(record)  # the specialised writer does not take it: fastavro does


def _wrong_values(kind: Any, named: dict[str, Any]) -> list[Any]:
    """Values of the wrong type for a field of this type (None only when not nullable)."""
    if isinstance(kind, list):  # null and one other type
        (other,) = (branch for branch in kind if branch != "null")
        return [value for value in _wrong_values(other, named) if value is not None]
    if isinstance(kind, str) and kind in named:
        kind = named[kind]
    kind = kind if isinstance(kind, str) else kind["type"]
    wrong: dict[str, list[Any]] = {
        "null": ["x", 0, False],
        "boolean": [None, 0, 1, "true", 1.0],
        "int": [None, 1.5, True, "1", INT_MAX + 1, INT_MIN - 1],
        "long": [None, 1.5, True, "1", LONG_MAX + 1, LONG_MIN - 1, float(2**40)],
        "double": [None, "1.5", "NaN", True, b"1", [1.0]],
        "float": [None, "1.5", True],
        "string": [None, b"x", 1, 1.5, True, ["x"]],
        "bytes": [None, "x", 1],
        "enum": [None, "not-a-symbol", 0],
        "fixed": [None, b"x" * 3, "abcd"],
        "array": [None, "ab", 1, [object()]],
        "map": [None, [("a", 1)], {1: None}],
        "record": [None, [], "x"],
    }
    return wrong[kind]


@pytest.mark.parametrize(
    "schema", [*SCHEMAS, ALL_TYPES_SCHEMA], ids=lambda s: s.path + ":" + s.name
)
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_a_wrong_type_or_a_none_where_null_is_not_allowed_raises(
    schema: StoredSchema, data: st.DataObject
) -> None:
    valid = data.draw(records(schema))
    named = schema.parsed.get("__named_schemas", {})
    for field in schema.parsed["fields"]:
        for wrong in _wrong_values(field["type"], named):
            record = {**valid, field["name"]: wrong}
            with pytest.raises(InvalidRecord, match=field["name"]):
                encode(schema, record)
            # ... as fastavro's own validation says (its writer alone takes some of these)
            assert not validate(record, schema.parsed, raise_errors=False)
        if "default" not in field:
            missing = {k: v for k, v in valid.items() if k != field["name"]}
            if "null" not in field["type"]:
                with pytest.raises(InvalidRecord):
                    encode(schema, missing)


def test_values_fastavro_alone_writes_silently_raise() -> None:
    """fastavro's writer takes None or any truthy value as a boolean, truncates a float in a
    long and writes a 64-bit value into an int: `encode` raises for each."""
    score = STORE.current_record("CemiScore")
    for change in (
        {"final": None},
        {"final": "yes"},
        {"revision": 2.7},
        {"published_at_ms": True},
        {"coverage": "1.5"},
    ):
        record = {**a_score_record(), **change}
        fastavro_bytes(score, record)  # fastavro writes something
        with pytest.raises(InvalidRecord):
            encode(score, record)
    with pytest.raises(InvalidRecord):
        encode(STORE.current_record("DeadLetter"), {**_a_dead_letter(), "source_partition": 2**40})
    not_records: list[Any] = [None, [], "x", (("level", "unit"),)]
    for not_a_record in not_records:
        with pytest.raises(InvalidRecord):
            encode(score, not_a_record)


def _a_dead_letter() -> dict[str, Any]:
    return {
        "original": b"\x00\x01",
        "original_key": None,
        "source_topic": "cx.events",
        "source_partition": 3,
        "source_offset": 42,
        "reason_code": "malformed",
        "reason": "not JSON",
        "dead_lettered_at_ms": 1_793_500_000_000,
    }


def test_cached_encodings_are_not_confused_across_types_or_lost_when_the_cache_empties() -> None:
    schema = STORE.current_record("CemiScore")
    writer = writer_of(schema)
    # 1 is cached as a long; True (== 1, same hash) and 1.0 must not be taken for it
    writer({**a_score_record(), "revision": 1})
    for value in (True, 1.0):
        with pytest.raises(fast_writer.Rejected):
            writer({**a_score_record(), "revision": value})
        with pytest.raises(InvalidRecord):
            encode(schema, {**a_score_record(), "revision": value})
    # more distinct strings and longs than the caches keep
    for i in range(2 * fast_writer._CACHE_SIZE + 7):
        record = {**a_score_record(), "unit": f"U{i}", "published_at_ms": 1_793_500_000_000 + i}
        assert writer(record) == fastavro_bytes(schema, record)


def test_each_schema_object_writes_its_own_header() -> None:
    schema = STORE.current_record("KpiWindow")
    framed = dataclasses.replace(schema, header=b"\x00\x00\x00\x00\x07")  # Confluent, id 7
    record = {
        **a_score_record(),
        "level": "kpi",
        "value": 0.5,
        "numerator": 1.0,
        "denominator": 2.0,
    }
    single, confluent = encode(schema, record), encode(framed, record)
    assert single == fastavro_bytes(schema, record)
    assert confluent == fastavro_bytes(framed, record)
    assert single[10:] == confluent[5:]


def test_a_float_out_of_the_float32_range_is_written_as_fastavro_writes_it() -> None:
    record = {**fastavro_record(), "f": 1e300, "uf": -1e300}
    assert encode(ALL_TYPES_SCHEMA, record) == fastavro_bytes(ALL_TYPES_SCHEMA, record)


def fastavro_record() -> dict[str, Any]:
    return {
        "n": None,
        "b": True,
        "i": -5,
        "l": 1_793_500_000_000,
        "f": 1.5,
        "d": -0.0,
        "dd": math.inf,
        "by": b"\x00\xff",
        "s": "é",
        "e": "green",
        "fx": b"abcd",
        "a": ["x", ""],
        "m": {"k": None, "j": -1},
        "inner": {"x": None, "colour": "red"},
        "inners": [{"x": 2.5, "colour": "green"}],
        "ub": None,
        "ui": 7,
        "ul": None,
        "uf": 2.0,
        "ud": None,
        "uby": b"",
        "us": None,
        "ue": "red",
        "ufx": None,
        "one": {"v": -1},
        "none": {},
    }


@pytest.mark.parametrize(
    ("field_type", "value"),
    [
        ({"type": "long", "logicalType": "timestamp-millis"}, datetime(2026, 11, 1, tzinfo=UTC)),
        (["null", "string", "long"], 5),
        (["string", "long"], 5),
        (
            ["null", {"type": "record", "name": "In", "fields": [{"name": "a", "type": "long"}]}],
            {"a": 5},
        ),
        (["null", {"type": "array", "items": "long"}], [5]),
        (
            {
                "type": "record",
                "name": "Node",
                "fields": [{"name": "next", "type": ["null", "Node"]}],
            },
            {"next": {"next": None}},
        ),
    ],
    ids=repr,
)
def test_schemas_the_writers_do_not_handle_go_to_fastavro(field_type: Any, value: Any) -> None:
    parsed = parse_schema(
        {"type": "record", "name": "R", "fields": [{"name": "v", "type": field_type}]}
    )
    assert compile_writer(parsed) is None  # type: ignore[arg-type]
    schema = StoredSchema("R", SCHEMAS[0].path, {}, parsed, "{}", single_object_header('"r"'))  # type: ignore[arg-type]
    assert encode(schema, {"v": value}) == fastavro_bytes(schema, {"v": value})
    with pytest.raises(InvalidRecord):
        encode(schema, {"v": 1.5})
