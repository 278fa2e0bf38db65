"""Avro schemas and the wire codec."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import pytest

from streams.core.events import EVENT_TYPES, InvalidEvent, validate_event
from streams.wire.codec import EventDecoder, encode
from streams.wire.schemas import (
    SchemaStore,
    event_schema,
    load_schema,
    schema_dir,
    single_object_header,
)
from tests.factories import event


def test_committed_event_schemas_are_what_the_event_definition_generates() -> None:
    for etype in EVENT_TYPES:
        committed = json.loads((schema_dir() / "events" / f"{etype}.avsc").read_text())
        assert committed == event_schema(etype), "regenerate: python -m streams.wire.schemas"


def test_every_field_has_a_doc_and_every_enum_a_default_symbol() -> None:
    for path in Path(str(schema_dir())).rglob("*.avsc"):
        schema = json.loads(path.read_text())
        for field in schema["fields"]:
            assert field.get("doc"), f"{path.name}: {field['name']} has no doc"
            kinds = field["type"] if isinstance(field["type"], list) else [field["type"]]
            for kind in kinds:
                if isinstance(kind, dict) and kind.get("type") == "enum":
                    assert kind["default"] in kind["symbols"], path.name


def test_single_object_header_is_the_pinned_crc64_fingerprint() -> None:
    # CRC-64-AVRO of "int" is 0x7275d51a3f395c8f; the header carries it little-endian
    assert single_object_header('"int"') == b"\xc3\x01" + bytes.fromhex("8f5c393f1ad57572")
    # pinned test vector of the current order schema: changing it breaks old readers' lookup
    stored = load_schema(schema_dir() / "events" / "order.avsc")
    assert stored.header.hex() == "c3018e388ee9343bb7c8"


def test_records_written_with_an_older_schema_version_are_read(tmp_path: Path) -> None:
    folder = tmp_path / "schemas"
    shutil.copytree(str(schema_dir()), folder)
    older = event_schema("order")
    older["fields"] = [f for f in older["fields"] if f["name"] != "lead_time_hours"]
    (folder / "events" / "order.v0.avsc").write_text(json.dumps(older))
    store = SchemaStore(folder)
    old = load_schema(folder / "events" / "order.v0.avsc")
    record = event("order", kind="new", status="completed")
    decoded = EventDecoder(store).decode(encode(old, record))
    assert decoded["lead_time_hours"] is None and decoded["type"] == "order"
    assert validate_event(decoded)["status"] == "completed"


def test_avro_and_json_decode_to_the_same_event() -> None:
    store = SchemaStore()
    decoder = EventDecoder(store)
    record = event(
        "install",
        kind="install",
        status="completed",
        on_time=True,
        first_time_right=None,
        delay_hours=1.5,
    )
    from_avro = decoder.decode(encode(store.current_event("install"), record))
    from_json = decoder.decode(orjson.dumps(record))
    assert from_avro == from_json


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b"", "empty"),
        (b"\x00\x01garbage", "malformed"),
        (b"[1]", "not_an_object"),
        (b"\xc3\x01" + b"\xff" * 8 + b"body", "unknown_schema"),
        (b"{" * 70_000, "too_large"),
    ],
)
def test_anything_else_is_refused_with_a_reason(value: bytes, code: str) -> None:
    with pytest.raises(InvalidEvent) as raised:
        EventDecoder(SchemaStore()).decode(value)
    assert raised.value.code == code


def test_the_top_level_schemas_folder_is_the_package_data_users_see() -> None:
    # one copy: `schemas/` links to the package's folder, which the wheel ships
    top = Path(__file__).resolve().parents[2] / "schemas"
    packaged = {
        str(p.relative_to(str(schema_dir()))): p.read_bytes()
        for p in Path(str(schema_dir())).rglob("*.avsc")
    }
    seen = {str(p.relative_to(top)): p.read_bytes() for p in top.rglob("*.avsc")}
    assert packaged and seen == packaged
    assert {"events/order.avsc", "out/cemi_score.avsc"} <= set(packaged)
