"""Confluent schema registry support (`CEMI_SCHEMA_REGISTRY_URL`).

Wire format: magic byte 0, the schema id (4 bytes, big-endian), then the Avro body. With a
registry configured, the output topics are written in that format with their schemas
registered at start-up under `<topic>-value`, and the input also accepts it (the writer schema
is fetched by id and cached). Without one, nothing here is used.

REST endpoints used: `POST /subjects/{subject}/versions` (register, returns the id) and
`GET /schemas/ids/{id}` (the schema of an id). Requests use the standard library: start-up
registration blocks on purpose (nothing runs yet); the decoder fetches an id it has not seen
synchronously, once per id, with a short timeout, a negative cache and a lookup budget, so
hostile input with made-up ids cannot stall the stream; async callers use `writer_async`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from dataclasses import dataclass, replace
from io import BytesIO
from typing import Any, Final

from fastavro import parse_schema, schemaless_reader
from fastavro.schema import to_parsing_canonical_form

from streams.core.events import InvalidEvent
from streams.wire.schemas import SchemaStore, StoredSchema

MAGIC: Final = 0
HEADER_LEN: Final = 5
CONTENT_TYPE: Final = "application/vnd.schemaregistry.v1+json"
MISSING_TTL_S: Final = 60.0  # how long an id the registry did not know stays unknown
LOOKUP_BUDGET: Final = 20  # registry fetches allowed to the synchronous path ...
LOOKUP_PERIOD_S: Final = 10.0  # ... per this many seconds
MAX_MISSING: Final = 4096
LOOKUP_TIMEOUT_S: Final = 1.0  # a lookup of an id, on the decoder's path
BREAKER_S: Final = 10.0  # after the registry failed to answer, lookups fail at once this long


class RegistryError(Exception):
    """The registry could not be reached or answered with an error (`status`: its HTTP
    status, None when it was not reached)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UnknownSchemaId(RegistryError):
    """The registry has no schema with that id."""


@dataclass(frozen=True)
class RegisteredSchema:
    schema_id: int
    name: str  # full record name, e.g. cemi.v1.Order ("" when not a named record)
    parsed: Any
    canonical: str


def confluent_header(schema_id: int) -> bytes:
    return bytes([MAGIC]) + schema_id.to_bytes(4, "big")


def schema_id_of(value: bytes) -> int | None:
    """The schema id of a Confluent-framed value, None when it is not one."""
    if len(value) < HEADER_LEN or value[0] != MAGIC:
        return None
    return int.from_bytes(value[1:HEADER_LEN], "big")


def subject_for(topic: str) -> str:
    """The TopicNameStrategy subject of a topic's values."""
    return f"{topic}-value"


def _record_name(raw: Any) -> str:
    if not isinstance(raw, dict) or "name" not in raw:
        return ""
    name = str(raw["name"])
    namespace = raw.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


class SchemaRegistry:
    """A small client of a Confluent-compatible schema registry, with an id cache."""

    def __init__(self, url: str, *, timeout_s: float = 2.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._by_id: dict[int, RegisteredSchema] = {}
        self._missing: dict[int, float] = {}
        self._budget_start = 0.0
        self._budget_used = 0
        self._down_until = 0.0
        self._lock = threading.Lock()

    # -- HTTP -----------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, body: Any = None, timeout_s: float | None = None
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the URL's scheme is checked above
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
        )
        try:
            timeout = timeout_s or self.timeout_s
            with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
                return json.loads(reply.read())
        except urllib.error.HTTPError as error:
            detail = error.read()[:300].decode(errors="replace")
            if error.code == 404:
                raise UnknownSchemaId(f"{method} {path}: 404 {detail}", 404) from None
            raise RegistryError(
                f"{method} {path}: HTTP {error.code} {detail}", error.code
            ) from None
        except (OSError, ValueError) as error:
            raise RegistryError(f"{method} {path}: {error}") from None

    # -- registration (start-up) ----------------------------------------------------------

    def register(self, subject: str, schema: Any) -> int:
        """Register `schema` (a JSON-able Avro schema) under `subject`; its id (blocking)."""
        text = json.dumps(schema)
        answer = self._request(
            "POST",
            f"/subjects/{urllib.parse.quote(subject, safe='')}/versions",
            {"schema": text},
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("id"), int):
            raise RegistryError(f"registering {subject}: unexpected answer {answer!r}")
        schema_id: int = answer["id"]
        self._by_id[schema_id] = RegisteredSchema(
            schema_id, _record_name(schema), parse_schema(schema), to_parsing_canonical_form(schema)
        )
        return schema_id

    def register_stored(self, topic: str, stored: StoredSchema) -> StoredSchema:
        """Register a stored schema for a topic; the copy whose header is the Confluent one."""
        schema_id = self.register(subject_for(topic), stored.raw)
        return replace(stored, header=confluent_header(schema_id))

    # -- lookups ---------------------------------------------------------------------------

    def cached(self, schema_id: int) -> RegisteredSchema | None:
        return self._by_id.get(schema_id)

    def _fetch(self, schema_id: int) -> RegisteredSchema:
        answer = self._request("GET", f"/schemas/ids/{schema_id}", timeout_s=LOOKUP_TIMEOUT_S)
        if not isinstance(answer, dict) or not isinstance(answer.get("schema"), str):
            raise RegistryError(f"schema id {schema_id}: unexpected answer {str(answer)[:200]}")
        if answer.get("schemaType", "AVRO") != "AVRO":
            raise UnknownSchemaId(f"schema id {schema_id} is {answer['schemaType']}, not Avro")
        try:
            raw = json.loads(answer["schema"])
            parsed = parse_schema(raw)
            canonical = to_parsing_canonical_form(raw)
        except Exception as error:  # fastavro raises several kinds for a bad schema
            raise RegistryError(f"schema id {schema_id} does not parse: {error}") from None
        found = RegisteredSchema(schema_id, _record_name(raw), parsed, canonical)
        self._by_id[schema_id] = found
        return found

    def writer(self, schema_id: int) -> RegisteredSchema:
        """The schema of an id: cached, else fetched (blocking for at most LOOKUP_TIMEOUT_S,
        bounded by the lookup budget, not at all while the registry is known to be down)."""
        found = self._by_id.get(schema_id)
        if found is not None:
            return found
        now = time.monotonic()
        with self._lock:
            if now < self._down_until:
                raise RegistryError(
                    f"the registry {self.url} did not answer; not asked again for "
                    f"{self._down_until - now:.0f} s"
                )
            missed = self._missing.get(schema_id)
            if missed is not None and now - missed < MISSING_TTL_S:
                raise UnknownSchemaId(f"schema id {schema_id} is not in the registry")
            if now - self._budget_start >= LOOKUP_PERIOD_S:
                self._budget_start, self._budget_used = now, 0
            if self._budget_used >= LOOKUP_BUDGET:
                raise RegistryError(
                    f"schema id {schema_id} not cached and the registry lookup budget "
                    f"({LOOKUP_BUDGET} per {LOOKUP_PERIOD_S:.0f} s) is spent"
                )
            self._budget_used += 1
        try:
            return self._fetch(schema_id)
        except UnknownSchemaId:
            with self._lock:
                if len(self._missing) >= MAX_MISSING:
                    self._missing.clear()
                self._missing[schema_id] = now
            raise
        except RegistryError as error:
            if error.status is None or error.status >= 500:  # not reached, or failing
                self._down_until = time.monotonic() + BREAKER_S
            raise

    async def writer_async(self, schema_id: int) -> RegisteredSchema:
        """As `writer`, without blocking the event loop (the fetch runs in a thread)."""
        found = self._by_id.get(schema_id)
        if found is not None:
            return found
        return await asyncio.to_thread(self.writer, schema_id)


# The registry a schema store's readers and writers use (set once at start-up by
# `attach_registry`; the ingest's EventDecoder picks it up when it is built).
_REGISTRIES: weakref.WeakKeyDictionary[SchemaStore, SchemaRegistry] = weakref.WeakKeyDictionary()


def attach_registry(store: SchemaStore, registry: SchemaRegistry) -> None:
    _REGISTRIES[store] = registry


def registry_of(store: SchemaStore) -> SchemaRegistry | None:
    return _REGISTRIES.get(store)


def reader_for(store: SchemaStore, writer: RegisteredSchema) -> Any:
    """The reader schema for records written with `writer`: None when it is the current
    schema of its record name (or there is none), else the current one."""
    current = store.current.get(writer.name)
    if current is None or current.canonical == writer.canonical:
        return None
    return current.parsed


def read_framed(
    store: SchemaStore, writer: RegisteredSchema, value: bytes
) -> tuple[str, dict[str, Any]]:
    stream = BytesIO(value)
    stream.seek(HEADER_LEN)
    record = schemaless_reader(stream, writer.parsed, reader_for(store, writer))
    if type(record) is not dict:
        raise InvalidEvent("malformed_avro", "the Avro body is not a record")
    return writer.name, record


def frame_outputs(store: SchemaStore, registry: SchemaRegistry, records: dict[str, str]) -> None:
    """Register the current schema of each output record under its topic's subject and make
    the store's current schema of that record the Confluent-framed copy, so every writer
    built from the store from now on (outputs, dead letters) writes the Confluent format.
    `records`: topic -> short record name. Attaches the registry to the store."""
    for topic, short_name in records.items():
        stored = store.current_record(short_name)
        store.current[stored.name] = registry.register_stored(topic, stored)
    attach_registry(store, registry)
