"""Wire formats: Avro single-object encoding (no registry needed) and JSON on input.

Input: single-object Avro (`C3 01` + CRC-64-AVRO fingerprint + body; the writer schema is
resolved by fingerprint from the schema store, so old and new versions are both read) or a
UTF-8 JSON object; with a schema registry attached to the store (`streams/wire/registry.py`),
also Confluent-framed Avro (`00` + schema id + body). Anything else raises InvalidEvent, which
the ingest dead-letters.
Output: single-object Avro with the current schema of the record (Confluent-framed with a
registry: the outputs then carry schemas whose header is the Confluent one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from io import BytesIO
from typing import Any, Final

import orjson
from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError, validate

from streams.core.events import InvalidEvent
from streams.wire import registry as confluent
from streams.wire.fast_writer import compile_writer, reject
from streams.wire.schemas import SchemaStore, StoredSchema, event_type_of

SINGLE_OBJECT_MAGIC: Final = b"\xc3\x01"
HEADER_LEN: Final = 10
DEFAULT_MAX_EVENT_BYTES: Final = 64 * 1024


class EventDecoder:
    """Bytes -> event dict (with `type`), for both Avro single-object and JSON input."""

    def __init__(
        self,
        store: SchemaStore,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        registry: confluent.SchemaRegistry | None = None,
    ) -> None:
        self.max_event_bytes = max_event_bytes
        self.store = store
        self.registry = registry or confluent.registry_of(store)
        # schema id -> (writer schema, reader schema or None, type), for Confluent framing
        self._by_id: dict[int, tuple[Any, Any, str]] = {}
        # header -> (writer schema, reader schema or None when it is the current one, type)
        self._readers: dict[bytes, tuple[Any, Any, str]] = {}
        for header, stored in store.by_header.items():
            etype = event_type_of(stored.name)
            if etype is None:
                continue
            current = store.current.get(stored.name)
            reader = None if current is None or current is stored else current.parsed
            self._readers[header] = (stored.parsed, reader, etype)

    def decode(self, value: bytes | None) -> dict[str, Any]:
        if not value:
            raise InvalidEvent("empty", "the message has no value")
        if len(value) > self.max_event_bytes:
            raise InvalidEvent(
                "too_large", f"{len(value)} bytes, more than the {self.max_event_bytes} allowed"
            )
        if value[:2] == SINGLE_OBJECT_MAGIC:
            return self._decode_avro(value)
        try:
            decoded = orjson.loads(value)
        except orjson.JSONDecodeError as error:
            # Confluent framing (a NUL first, never JSON) is looked at only once JSON failed:
            # the JSON and single-object paths pay nothing for it.
            if value[0] == 0 and self.registry is not None:
                return self._decode_framed(value)
            raise InvalidEvent(
                "malformed", f"neither Avro single-object nor JSON: {error}"
            ) from None
        if type(decoded) is not dict:
            raise InvalidEvent("not_an_object", "JSON input must be an object")
        return decoded

    def _decode_avro(self, value: bytes) -> dict[str, Any]:
        found = self._readers.get(value[:HEADER_LEN])
        if found is None:
            raise InvalidEvent(
                "unknown_schema", f"no event schema with fingerprint {value[2:HEADER_LEN].hex()}"
            )
        writer, reader, etype = found
        stream = BytesIO(value)
        stream.seek(HEADER_LEN)
        return self._record(stream, writer, reader, etype)

    async def prefetch(self, values: Iterable[bytes | None]) -> None:
        """Fetch, off the event loop, the writer schemas of the Confluent-framed values whose
        id was not seen yet, so that `decode` of those values does not wait on the registry
        (a batch consumer awaits this before decoding the batch). Nothing without a registry.
        """
        registry = self.registry
        if registry is None:
            return
        wanted = {
            int.from_bytes(value[1:5], "big")
            for value in values
            if value and value[0] == 0 and len(value) >= confluent.HEADER_LEN
        }
        for schema_id in wanted - self._by_id.keys():
            # a failure is reported by `decode`, for each record, from the caches
            with contextlib.suppress(confluent.RegistryError):
                await registry.writer_async(schema_id)

    def _decode_framed(self, value: bytes) -> dict[str, Any]:
        schema_id = confluent.schema_id_of(value)
        if schema_id is None:
            raise InvalidEvent("malformed", "a Confluent-framed record needs 5 header bytes")
        found = self._by_id.get(schema_id)
        if found is None:
            found = self._by_id[schema_id] = self._framed_reader(schema_id)
        writer, reader, etype = found
        stream = BytesIO(value)
        stream.seek(confluent.HEADER_LEN)
        return self._record(stream, writer, reader, etype)

    def _framed_reader(self, schema_id: int) -> tuple[Any, Any, str]:
        assert self.registry is not None
        try:
            writer = self.registry.writer(schema_id)
        except confluent.UnknownSchemaId:
            raise InvalidEvent(
                "unknown_schema",
                f"schema id {schema_id} is not in the schema registry {self.registry.url}",
            ) from None
        except confluent.RegistryError as error:
            raise InvalidEvent("registry_unavailable", f"schema id {schema_id}: {error}") from None
        etype = event_type_of(writer.name)
        if etype is None:
            raise InvalidEvent(
                "unknown_schema",
                f"schema id {schema_id} is {writer.name or 'not a named record'}, not an event",
            )
        return writer.parsed, confluent.reader_for(self.store, writer), etype

    @staticmethod
    def _record(stream: BytesIO, writer: Any, reader: Any, etype: str) -> dict[str, Any]:
        try:
            record = schemaless_reader(stream, writer, reader)
        except Exception as error:  # truncated or corrupt bodies raise many kinds
            raise InvalidEvent(
                "malformed_avro", f"cannot decode the Avro body: {error!r}"
            ) from None
        if stream.read(1):
            raise InvalidEvent("malformed_avro", "trailing bytes after the Avro record")
        if type(record) is not dict:
            raise InvalidEvent("malformed_avro", "the Avro body is not a record")
        record["type"] = etype
        return record


class InvalidRecord(ValueError):
    """A record that does not match the schema it is encoded with."""


# id(StoredSchema) -> (that schema, its writer): the schema is held, so its id is not reused
_WRITERS: dict[int, tuple[StoredSchema, Callable[[Any], bytes]]] = {}
_MAX_WRITERS: Final = 256


def encode(schema: StoredSchema, record: dict[str, Any]) -> bytes:
    """Single-object Avro encoding of `record` with `schema` (its header, then the body).

    A writer specialised for the schema (`streams.wire.fast_writer`) writes the records whose
    values all have exactly the schema's types, byte for byte as fastavro would; any other
    record is validated against the schema (InvalidRecord when it does not match: a None in a
    non-nullable field, a wrong type, an int out of range) and written by fastavro.
    """
    found = _WRITERS.get(id(schema))
    if found is None or found[0] is not schema:
        found = _writer_of(schema)
    try:
        return found[1](record)
    except Exception:  # not a record the specialised writer takes
        return encode_checked(schema, record)


def _writer_of(schema: StoredSchema) -> tuple[StoredSchema, Callable[[Any], bytes]]:
    writer = compile_writer(schema.parsed, schema.header)
    if writer is None:  # constructs the specialised writers do not handle: all to fastavro
        writer = reject
    if len(_WRITERS) >= _MAX_WRITERS:
        _WRITERS.clear()
    found = _WRITERS[id(schema)] = (schema, writer)
    return found


def encode_checked(schema: StoredSchema, record: dict[str, Any]) -> bytes:
    """`encode` by fastavro alone, the record validated first (fastavro's writer alone takes,
    e.g., None or any truthy value as a boolean and a float as a long, silently)."""
    # without raise_errors first: fastavro builds (JSON) error messages for every union
    # branch that does not match, even in a valid record
    if not validate(record, schema.parsed, raise_errors=False):
        try:
            validate(record, schema.parsed, raise_errors=True)
        except ValidationError as error:
            raise InvalidRecord(f"not a valid {schema.name}: {error}") from None
        raise InvalidRecord(f"not a valid {schema.name}")
    out = BytesIO()
    out.write(schema.header)
    schemaless_writer(out, schema.parsed, record)
    return out.getvalue()


def decode_record(store: SchemaStore, value: bytes) -> tuple[str, dict[str, Any]]:
    """Any record of the store (outputs included): (record name, record). For `cemi tail`."""
    stored = store.by_header.get(value[:HEADER_LEN]) if value[:2] == SINGLE_OBJECT_MAGIC else None
    if stored is None:
        raise InvalidEvent("unknown_schema", "not a single-object Avro record of a known schema")
    stream = BytesIO(value)
    stream.seek(HEADER_LEN)
    current = store.current.get(stored.name)
    reader = None if current is None or current is stored else current.parsed
    record = schemaless_reader(stream, stored.parsed, reader)
    if type(record) is not dict:
        raise InvalidEvent("malformed_avro", "the Avro body is not a record")
    return stored.name, record
