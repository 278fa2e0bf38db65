"""Hostile input through the real ingest code (`Ingest.process`) without a broker: every
malformed message becomes exactly one dead letter with a reason, valid events in the same
batch still become envelope entries, nothing raises; customer_ref pseudonymisation."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.contract.envelope import decode_envelope
from streams.core.catalog import load_catalog
from streams.core.events import (
    EVENT_FIELDS,
    EVENT_TYPES,
    InvalidEvent,
    pseudonymise,
    pseudonymous_ref,
    validate_event,
    without_literals,
)
from streams.core.plan import ScoringPlan
from streams.ingest.stage import Ingest, held
from streams.scoring.fold import PartitionState
from streams.scoring.state import FoldConfig
from streams.settings import Settings, load_settings
from streams.wire.codec import decode_record, encode
from streams.wire.schemas import SchemaStore
from tests.factories import event
from tests.security.malformed import RAW_REF, Malformed, base_event

KEY = "k" * 32
PLAN = ScoringPlan(load_catalog())
STORE = SchemaStore()
KNOWN_CODES = frozenset(
    {
        "empty",
        "too_large",
        "malformed",
        "malformed_avro",
        "unknown_schema",
        "not_an_object",
        "unknown_type",
        "missing_field",
        "bad_value",
        "bad_unit",
        "future_time",
        "unit_cap",
        "unknown_programme",
        "unknown_indicator",
    }
)


class FakeProducer:
    """Collects what the ingest sends; every send is acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, int | None]] = []

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> asyncio.Future[None]:
        self.sent.append((topic, value, key, partition))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def make_ingest(settings: Settings) -> tuple[Ingest, FakeProducer]:
    producer = FakeProducer()
    return Ingest(settings, PLAN, STORE, "unused:1", producer), producer  # type: ignore[arg-type]


def records(values: list[tuple[str, bytes | None, bytes | None]]) -> list[tuple[Any, Any]]:
    out = []
    for offset, (topic, value, key) in enumerate(values):
        tp = TopicPartition(topic, 0)
        record = SimpleNamespace(
            topic=topic, partition=0, offset=offset, timestamp=1, key=key, value=value
        )
        out.append((tp, held(record)))  # as the ingest's merge holds it
    return out


def run(ingest: Ingest, batch: list[tuple[Any, Any]]) -> None:
    asyncio.run(ingest.process(batch))


def outputs(producer: FakeProducer, settings: Settings) -> tuple[list[Any], list[dict[str, Any]]]:
    entries, dead = [], []
    for topic, value, _, _ in producer.sent:
        if topic == settings.topic("internal.envelopes"):
            entries.extend(decode_envelope(value))
        else:
            assert topic == settings.topic("deadletter")
            dead.append(decode_record(STORE, value)[1])
    return entries, dead


def valid(i: int) -> dict[str, Any]:
    return event(
        "install",
        event_id=f"ok-{i}",
        customer_ref=f"{RAW_REF}-valid-{i}",
        kind="install",
        status="completed",
        on_time=True,
        delay_hours=0.0,
    )


def test_a_batch_of_every_kind_of_hostile_message() -> None:
    settings = load_settings(max_units=3)
    ingest, producer = make_ingest(settings)
    bad = list(Malformed(5, STORE).messages(3_000))
    bad.append(Malformed(6, STORE).one_megabyte())
    values: list[tuple[str, bytes | None, bytes | None]] = []
    for i, (_, value, _) in enumerate(bad):
        values.append((settings.topic("touchpoint.orders"), value, None))
        if i % 10 == 0:
            values.append((settings.topic("touchpoint.installs"), orjson.dumps(valid(i)), None))
    run(ingest, records(values))
    entries, dead = outputs(producer, settings)
    assert len(dead) == len(bad)
    assert len(entries) == len(values) - len(bad)
    assert all(d["reason_code"] in KNOWN_CODES and d["reason"] for d in dead)
    # a dead letter carries the original bytes of exactly the message it stands for
    by_offset = {d["source_offset"]: d for d in dead}
    for offset, (_, value, _) in enumerate(values):
        if offset in by_offset:
            assert by_offset[offset]["original"] == (value or b"")
    codes = Counter(d["reason_code"] for d in dead)
    assert ingest.stats.dead_lettered == codes
    print(f"\n{len(bad)} hostile messages, {len(entries)} valid: dead letters {dict(codes)}")


def test_a_trailing_newline_does_not_pass_an_id_pattern() -> None:
    # `re.match` with `$` accepts "HPG\n": a unit code with a newline would become its own
    # unit (and a metrics label); the validator uses fullmatch
    for name, value in [("unit", "HPG\n"), ("event_id", "e1\n"), ("customer_ref", "c1\n")]:
        with pytest.raises(InvalidEvent):
            validate_event({**event("survey", touchpoint="care", csat=5), name: value})
    with pytest.raises(InvalidEvent):
        validate_event(event("survey", touchpoint="care\n", csat=5))


def test_the_distinct_unit_cap_dead_letters_new_units_only() -> None:
    """The ingest passes any valid unit on; the partition its state lives in admits the
    first `max_units` and dead-letters the others' events (tests/scoring/test_durability.py
    covers the cap across a restart)."""
    settings = load_settings(max_units=2)
    ingest, producer = make_ingest(settings)
    topic = settings.topic("touchpoint.installs")
    values: list[tuple[str, bytes | None, bytes | None]] = []
    for i, unit in enumerate(["HPG", "QBH", "ZZZ1", "HPG", "ZZZ2", "QBH"]):
        values.append((topic, orjson.dumps({**valid(i), "unit": unit}), None))
    run(ingest, records(values))
    entries, dead = outputs(producer, settings)
    assert dead == [] and len(entries) == 6
    config = FoldConfig("Asia/Ho_Chi_Minh", 600_000, 3_600_000, 60_000, max_units=2)
    state = PartitionState(0, config)
    state.apply(entries, 1_900_000_000_000)
    assert sorted(state.units) == ["HPG", "QBH"] and state.counts.scored == 4
    refused = [r for _, kind, r in state.outbox.take() if kind == "dead"]
    assert [(d["reason_code"], d["original"]["unit"]) for d in refused] == [
        ("unit_cap", "ZZZ1"),
        ("unit_cap", "ZZZ2"),
    ]


# --- hypothesis: malformed JSON events -----------------------------------------------------

WRONG = st.one_of(
    st.integers(min_value=-(2**62), max_value=2**62),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=20),
    st.lists(st.integers(-1000, 1000), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(-1000, 1000), max_size=3),
)


@st.composite
def broken_json_events(draw: st.DrawFn) -> tuple[bytes, bool]:
    """(JSON bytes, is it valid?) — a valid event with one to three fields replaced by
    arbitrary values or removed; validity is decided by the field definitions, not by
    calling the validator."""
    etype = draw(st.sampled_from(EVENT_TYPES))
    obj: dict[str, Any] = base_event(
        __import__("random").Random(draw(st.integers(0, 10**6))), etype, 1
    )
    specs = EVENT_FIELDS[etype]
    still_valid = True
    for name in draw(st.lists(st.sampled_from(sorted(specs)), min_size=1, max_size=3, unique=True)):
        spec = specs[name]
        if draw(st.booleans()):
            obj.pop(name, None)
            still_valid &= spec.nullable
            continue
        value = draw(WRONG)
        obj[name] = value
        still_valid &= _accepts(spec, value)
        # a programme update must also name the catalog's programme and indicator
        still_valid &= name not in ("programme", "indicator")
    return orjson.dumps(obj), still_valid


def _accepts(spec: Any, value: Any) -> bool:
    """Whether the field definition admits `value` (mirrors the documented rules)."""
    kind = spec.type
    if kind == "enum":
        return type(value) is str and value in spec.symbols
    if kind == "bool":
        return type(value) is bool
    if kind == "str":
        return type(value) is str and spec.pattern.fullmatch(value) is not None
    if type(value) is bool or type(value) not in (int, float):
        return False
    if kind == "int" and type(value) is not int:
        return False
    if type(value) is float and not math.isfinite(value):
        return False
    if spec.minimum is not None and value < spec.minimum:
        return False
    return not (spec.maximum is not None and value > spec.maximum)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(broken_json_events(), min_size=1, max_size=20))
def test_malformed_json_events_are_dead_lettered_never_raised(
    batch: list[tuple[bytes, bool]],
) -> None:
    settings = load_settings(max_future_ms=10**13)  # only the field rules decide here
    ingest, producer = make_ingest(settings)
    topic = settings.topic("touchpoint.orders")
    run(ingest, records([(topic, value, None) for value, _ in batch]))
    entries, dead = outputs(producer, settings)
    expected_bad = sum(1 for _, ok in batch if not ok)
    assert len(dead) == expected_bad
    assert len(entries) == len(batch) - expected_bad
    assert all(d["reason_code"] in KNOWN_CODES for d in dead)


# --- customer_ref pseudonymisation ---------------------------------------------------------


def test_the_hmac_is_keyed_stable_and_not_the_value() -> None:
    a = pseudonymous_ref("CUST-0042", KEY.encode())
    assert a == pseudonymous_ref("CUST-0042", KEY.encode())
    assert a != pseudonymous_ref("CUST-0042", b"another key of 16+ bytes")
    assert a != pseudonymous_ref("CUST-0043", KEY.encode())
    assert len(a) == 64 and "CUST" not in a
    event_ = {"customer_ref": "CUST-0042", "unit": "HPG"}
    assert pseudonymise(event_, KEY.encode()) == {"customer_ref": a, "unit": "HPG"}
    assert event_["customer_ref"] == "CUST-0042"  # a copy
    assert "[1, 2]" not in pseudonymise({"customer_ref": [1, 2]}, KEY.encode())["customer_ref"]


def test_without_literals_drops_quoted_input() -> None:
    text = "cannot decode: UnicodeDecodeError('utf-8', b\"\\xffRAWREF's\", 0, 1, 'invalid')"
    assert RAW_REF not in without_literals(text)
    assert without_literals("order.unit does not match ^[A-Z]$") == (
        "order.unit does not match ^[A-Z]$"
    )


def test_with_a_key_dead_letters_carry_no_raw_customer_ref() -> None:
    settings = load_settings(customer_ref_hmac_key=KEY)
    ingest, producer = make_ingest(settings)
    topic = settings.topic("touchpoint.orders")
    malformed = Malformed(9, STORE)
    bad = [value for _, value, _ in malformed.messages(2_000)]
    bad.append(malformed.one_megabyte()[1])
    values = [(topic, value, f"{RAW_REF}-key-{i}".encode()) for i, value in enumerate(bad)]
    values += [(topic, orjson.dumps(valid(i)), None) for i in range(50)]
    values += [(topic, encode(STORE.current_event("install"), valid(99)), None)]
    run(ingest, records(values))
    assert len(producer.sent) > len(bad)
    for _, value, key, _ in producer.sent:
        assert RAW_REF.encode() not in value
        assert key is None or RAW_REF.encode() not in key
    entries, dead = outputs(producer, settings)
    assert len(dead) == len(bad) and len(entries) == 51
    withheld = [d for d in dead if d["original"] == b""]
    reencoded = [d for d in dead if d["original"]]
    assert all("original withheld" in d["reason"] for d in withheld if d["reason_code"] != "empty")
    # a decodable original is kept, with the HMAC in place of the reference
    for d in reencoded:
        obj = orjson.loads(d["original"])
        ref = obj.get("customer_ref")
        assert ref is None or len(ref) == 64
    assert reencoded and withheld
    print(f"\nwith a key: {len(reencoded)} originals re-encoded, {len(withheld)} withheld")


def test_without_a_key_dead_letters_keep_the_original_bytes() -> None:
    settings = load_settings()
    ingest, producer = make_ingest(settings)
    value = orjson.dumps({**valid(1), "status": "bogus"})
    run(ingest, records([(settings.topic("touchpoint.installs"), value, b"k")]))
    _, dead = outputs(producer, settings)
    assert dead[0]["original"] == value and dead[0]["original_key"] == b"k"


def test_envelopes_never_carry_the_customer_ref() -> None:
    settings = load_settings()
    ingest, producer = make_ingest(settings)
    topic = settings.topic("touchpoint.installs")
    run(ingest, records([(topic, orjson.dumps(valid(i)), None) for i in range(20)]))
    assert producer.sent
    assert all(RAW_REF.encode() not in value for _, value, _, _ in producer.sent)
