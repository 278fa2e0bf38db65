"""Avro schemas: the event schemas derived from the one event definition, and the store of
every schema version shipped in the package (`streams/schemas/`, which the top-level
`schemas/` links to), looked up by CRC-64-AVRO fingerprint.

`events/*.avsc` are generated from `streams.core.events` (`python -m streams.wire.schemas`; a
test checks the committed files are what the code generates). Older versions stay in the
folder (e.g. `order.v1.avsc`) so that records written with them are still read. The files are
package data, read with `importlib.resources`, so an installed wheel finds them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Final

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from streams.core.events import EVENT_FIELDS, FieldSpec

NAMESPACE: Final = "cemi.v1"
UNKNOWN_SYMBOL: Final = "unknown"  # enum default: new symbols read as this by old readers


def schema_dir() -> Traversable:
    """The schemas shipped with the package."""
    return resources.files("streams") / "schemas"


def _avsc_files(folder: Traversable) -> list[tuple[str, Traversable]]:
    """Every `.avsc` below `folder`, as (relative path, file), sorted by path."""
    found: list[tuple[str, Traversable]] = []
    for item in folder.iterdir():
        if item.is_dir():
            found.extend((f"{item.name}/{sub}", f) for sub, f in _avsc_files(item))
        elif item.name.endswith(".avsc"):
            found.append((item.name, item))
    return sorted(found, key=lambda pair: pair[0])


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _field_schema(etype: str, spec: FieldSpec) -> dict[str, Any]:
    avro: Any
    if spec.type == "enum":
        # Shared enums (service, channel) get one name; the others are named per event type.
        owner = "" if spec.name in ("service", "channel") else _camel(etype)
        avro = {
            "type": "enum",
            "name": f"{owner}{_camel(spec.name)}",
            "symbols": [*spec.symbols, UNKNOWN_SYMBOL],
            "default": UNKNOWN_SYMBOL,
        }
    else:
        avro = {"str": "string", "int": "long", "float": "double", "bool": "boolean"}[spec.type]
    field: dict[str, Any] = {"name": spec.name, "doc": spec.doc}
    if spec.nullable:
        field.update(type=["null", avro], default=None)
    else:
        field["type"] = avro
    return field


def event_schema(etype: str) -> dict[str, Any]:
    """The Avro record schema of one event type (the record name carries the type)."""
    kind = "touchpoint event" if "service" in EVENT_FIELDS[etype] else "event"
    return {
        "type": "record",
        "name": _camel(etype),
        "namespace": NAMESPACE,
        "doc": f"A {etype.replace('_', ' ')} {kind} (type `{etype}`).",
        "fields": [_field_schema(etype, spec) for spec in EVENT_FIELDS[etype].values()],
    }


def event_type_of(record_name: str) -> str | None:
    """`cemi.v1.SubscriberBase` -> `subscriber_base` (None for non-event records)."""
    short = record_name.rsplit(".", 1)[-1]
    for etype in EVENT_FIELDS:
        if _camel(etype) == short:
            return etype
    return None


@dataclass(frozen=True)
class StoredSchema:
    name: str  # full record name, e.g. cemi.v1.Order
    path: str  # relative to the schema folder, e.g. out/alert.avsc
    raw: dict[str, Any]  # the schema as written
    parsed: dict[str, Any]
    canonical: str
    header: bytes  # single-object header: C3 01 + fingerprint (little-endian)


def single_object_header(canonical: str) -> bytes:
    # fastavro gives the fingerprint's bytes already in the little-endian order of the spec.
    return b"\xc3\x01" + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def load_schema(path: Traversable | Path, relative: str | None = None) -> StoredSchema:
    raw = json.loads(path.read_text(encoding="utf-8"))
    parsed: dict[str, Any] = parse_schema(raw)  # type: ignore[assignment]
    canonical = to_parsing_canonical_form(raw)
    name = f"{raw.get('namespace', NAMESPACE)}.{raw['name']}"
    return StoredSchema(
        name, relative or path.name, raw, parsed, canonical, single_object_header(canonical)
    )


class SchemaStore:
    """Every schema in the folder: the current one per record name, and all by fingerprint.

    The current version of a record is `NAME.avsc`; older ones are `NAME.vN.avsc`.
    """

    def __init__(self, folder: Traversable | Path | None = None) -> None:
        self.by_header: dict[bytes, StoredSchema] = {}
        self.current: dict[str, StoredSchema] = {}
        for relative, path in _avsc_files(folder or schema_dir()):
            stored = load_schema(path, relative)
            self.by_header[stored.header] = stored
            if path.name.count(".") == 1:
                if stored.name in self.current:
                    raise ValueError(f"{path}: a second current schema for {stored.name}")
                self.current[stored.name] = stored

    def current_event(self, etype: str) -> StoredSchema:
        return self.current[f"{NAMESPACE}.{_camel(etype)}"]

    def current_record(self, short_name: str) -> StoredSchema:
        return self.current[f"{NAMESPACE}.{short_name}"]


def write_event_schemas(folder: Path | None = None) -> list[Path]:
    """(Re)generate `schemas/events/*.avsc` from the event definition."""
    from streams.core.events import EVENT_TYPES

    target = (folder or Path(str(schema_dir()))) / "events"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for etype in EVENT_TYPES:
        path = target / f"{etype}.avsc"
        path.write_text(json.dumps(event_schema(etype), indent=2) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":  # python -m streams.wire.schemas
    for written_path in write_event_schemas():
        print(written_path)
