"""The output topics' wire format, written and read in one place (`CEMI_OUTPUT_FORMAT`).

- `avro` without a schema registry: Avro single-object encoding (`C3 01`, the 8-byte
  CRC-64-AVRO fingerprint of the writer schema, little-endian, then the Avro body).
- `avro` with `CEMI_SCHEMA_REGISTRY_URL`: the Confluent wire format (`00`, the 4-byte schema
  id, big-endian, then the body), each schema registered under `<topic>-value`.
- `json`: one UTF-8 JSON object per record with exactly the Avro schema's field names (a field
  the record lacks takes the schema's default; `bytes` fields are base64 strings).

`OutputCodec.decode` reads every one of them (the first byte tells which), so the HTTP API
and the command-line readers (`cemi tail`, `cemi alerts`, `cemi ack`) read whatever a worker
writes, whatever their own settings say.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from streams.core.events import InvalidEvent
from streams.wire.codec import SINGLE_OBJECT_MAGIC, decode_record, encode
from streams.wire.registry import (
    MAGIC,
    RegistryError,
    SchemaRegistry,
    attach_registry,
    frame_outputs,
    read_framed,
    registry_of,
    schema_id_of,
)
from streams.wire.schemas import SchemaStore

# output topic (the key of `Topics.output`) -> the record its values carry
OUTPUT_RECORDS: Final = {
    "kpi": "KpiWindow",
    "scores": "CemiScore",
    "late": "LateEvent",
    "alerts": "Alert",
    "deadletter": "DeadLetter",
    "standings": "Standings",
    "programmes": "ProgrammeStatus",
}
FORMATS: Final = ("avro", "json")
_JSON_START: Final = ord("{")
_NO_DEFAULT: Final = object()

Encoder = Callable[[dict[str, Any]], bytes]


def _json_bytes(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class OutputCodec:
    """Encoders of the output records in the configured format, and the decoder of all."""

    def __init__(self, store: SchemaStore, output_format: str = "avro") -> None:
        if output_format not in FORMATS:
            raise ValueError(f"output format must be one of {FORMATS}, got {output_format!r}")
        self.store = store
        self.format = output_format

    # -- writing ---------------------------------------------------------------------------

    def use_registry(self, registry: SchemaRegistry, topics: Mapping[str, str]) -> None:
        """Confluent framing from now on (Avro only): registers every output record's schema
        under `<topic>-value`, blocking (call it at start-up). `topics`: output key -> topic.
        The registry also serves the decoding of framed records."""
        if self.format != "avro":
            attach_registry(self.store, registry)
            return
        frame_outputs(self.store, registry, {topics[k]: r for k, r in OUTPUT_RECORDS.items()})

    def encoder(self, short_name: str) -> Encoder:
        """How records of `short_name` (e.g. `CemiScore`) are written. Take it after
        `use_registry`: the Avro encoder holds the schema current then."""
        stored = self.store.current_record(short_name)
        if self.format == "avro":
            return lambda record: encode(stored, record)
        fields = [(f["name"], f.get("default", _NO_DEFAULT)) for f in stored.raw["fields"]]

        def to_json(record: dict[str, Any]) -> bytes:
            shaped = {}
            for name, default in fields:
                value = record.get(name, default)
                if value is _NO_DEFAULT:
                    raise ValueError(f"{stored.name}: the record has no {name!r}")
                shaped[name] = value
            return orjson.dumps(shaped, default=_json_bytes)

        return to_json

    # -- reading ---------------------------------------------------------------------------

    def decode(self, value: bytes) -> dict[str, Any]:
        """An output record in any format. A Confluent-framed record's schema is fetched
        from the registry when not cached (blocking: for command-line readers)."""
        framed = self._framed(value)
        if framed is None:
            return self._decode_local(value)
        registry, schema_id = framed
        try:
            writer = registry.writer(schema_id)
        except RegistryError as error:
            raise InvalidEvent("unknown_schema", str(error)) from None
        return read_framed(self.store, writer, value)[1]

    async def decode_async(self, value: bytes) -> dict[str, Any]:
        """`decode` without blocking the event loop on the registry (the HTTP API)."""
        framed = self._framed(value)
        if framed is None:
            return self._decode_local(value)
        registry, schema_id = framed
        try:
            writer = await registry.writer_async(schema_id)
        except RegistryError as error:
            raise InvalidEvent("unknown_schema", str(error)) from None
        return read_framed(self.store, writer, value)[1]

    def _framed(self, value: bytes) -> tuple[SchemaRegistry, int] | None:
        """(registry, schema id) of a Confluent-framed value; None for the other formats."""
        if value[:1] != bytes([MAGIC]):
            return None
        schema_id = schema_id_of(value)
        if schema_id is None:
            raise InvalidEvent("malformed", "a Confluent-framed record needs 5 header bytes")
        registry = registry_of(self.store)
        if registry is None:
            raise InvalidEvent(
                "unknown_schema",
                "a Confluent-framed record, and CEMI_SCHEMA_REGISTRY_URL is not set",
            )
        return registry, schema_id

    def _decode_local(self, value: bytes) -> dict[str, Any]:
        if not value:
            raise InvalidEvent("empty", "the record has no value")
        if value[:2] == SINGLE_OBJECT_MAGIC:
            return decode_record(self.store, value)[1]
        if value[0] == _JSON_START:
            try:
                record = orjson.loads(value)
            except orjson.JSONDecodeError as error:
                raise InvalidEvent("malformed", f"not a JSON object: {error}") from None
            if type(record) is dict:
                return record
        raise InvalidEvent("unknown_schema", "neither Avro (single-object/Confluent) nor JSON")


def reader_codec(registry_url: str | None) -> OutputCodec:
    """A codec for readers of the output topics (the CLI): the registry attached when
    `CEMI_SCHEMA_REGISTRY_URL` is set, so framed records are read too."""
    codec = OutputCodec(SchemaStore())
    if registry_url:
        attach_registry(codec.store, SchemaRegistry(registry_url))
    return codec
