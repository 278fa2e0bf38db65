"""Schema registry wire format against an in-process fake of the registry's REST endpoints:
framed output round trip, framed input decoded (also with an older writer schema), unknown
ids dead-lettered with a clear reason, and nothing changed without a registry."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from fastavro import schemaless_writer

from streams.core.events import InvalidEvent, validate_event
from streams.settings import load_settings
from streams.topics import Topics
from streams.wire import registry as confluent
from streams.wire.codec import EventDecoder, encode
from streams.wire.messages import OutputMessages
from streams.wire.outputs import OUTPUT_RECORDS, OutputCodec, reader_codec
from streams.wire.registry import SchemaRegistry, registry_of
from streams.wire.schemas import SchemaStore, event_schema
from tests.factories import a_score_record, event

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class FakeRegistry:
    """The registry endpoints the scorer uses, served from a thread of the test process."""

    def __init__(self) -> None:
        self.schemas: list[str] = []  # id - 1 -> schema text
        self.subjects: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str]] = []
        self.refused: set[str] = set()  # subjects whose registrations answer 409
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def _reply(self, body: Any, status: int = 200) -> web.Response:
        return web.Response(body=json.dumps(body), status=status, content_type=CONTENT_TYPE)

    async def register(self, request: web.Request) -> web.Response:
        self.requests.append(("POST", request.path))
        if request.match_info["subject"] in self.refused:
            return self._reply({"error_code": 409, "message": "incompatible schema"}, 409)
        body = await request.json()
        text = json.dumps(json.loads(body["schema"]), sort_keys=True)  # same schema, same id
        if text not in self.schemas:
            self.schemas.append(text)
        schema_id = self.schemas.index(text) + 1
        versions = self.subjects.setdefault(request.match_info["subject"], [])
        if schema_id not in versions:
            versions.append(schema_id)
        return self._reply({"id": schema_id})

    async def by_id(self, request: web.Request) -> web.Response:
        self.requests.append(("GET", request.path))
        schema_id = int(request.match_info["id"])
        if not 1 <= schema_id <= len(self.schemas):
            return self._reply({"error_code": 40403, "message": "Schema not found"}, 404)
        return self._reply({"schema": self.schemas[schema_id - 1]})

    def start(self) -> str:
        app = web.Application()
        app.router.add_post("/subjects/{subject}/versions", self.register)
        app.router.add_get("/schemas/ids/{id}", self.by_id)
        self._thread.start()

        async def serve() -> str:
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = self._runner.addresses[0][1]
            return f"http://127.0.0.1:{port}"

        self.url = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)
        return self.url

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def add(self, subject: str, schema: dict[str, Any]) -> int:
        """Register a schema directly (as a producer would); its id."""
        text = json.dumps(schema, sort_keys=True)
        if text not in self.schemas:
            self.schemas.append(text)
        schema_id = self.schemas.index(text) + 1
        self.subjects.setdefault(subject, []).append(schema_id)
        return schema_id


@pytest.fixture
def fake_registry() -> Iterator[FakeRegistry]:
    fake = FakeRegistry()
    fake.start()
    yield fake
    fake.stop()


def framed(schema_id: int, schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """A Confluent-framed record, as a producer with a registry serializer writes it."""
    from io import BytesIO

    from fastavro import parse_schema

    out = BytesIO()
    out.write(confluent.confluent_header(schema_id))
    schemaless_writer(out, parse_schema(schema), record)
    return out.getvalue()


def test_outputs_are_registered_and_framed_and_read_back(fake_registry: FakeRegistry) -> None:
    settings = load_settings()
    topics = Topics(settings)
    store = SchemaStore()
    outputs = OutputMessages(topics, OutputCodec(store))
    outputs.use_registry(SchemaRegistry(fake_registry.url))

    assert set(fake_registry.subjects) == {f"{topics.output(n)}-value" for n in OUTPUT_RECORDS}
    assert registry_of(store) is not None
    record = a_score_record()
    topic, value, key, _, timestamp = outputs.score_message(record)
    assert timestamp == record["window_start_ms"]
    assert (
        topic == topics.output("scores") and key == b"unit/HPG/-/-/-/day/2026-11-01T00:00:00+07:00"
    )
    schema_id = confluent.schema_id_of(value)
    assert value[0] == 0 and schema_id in fake_registry.subjects[f"{topic}-value"]
    assert asyncio.run(outputs.codec.decode_async(value)) == record
    # the dead letters the ingest writes from the same store are framed too
    assert store.current_record("DeadLetter").header[0] == 0
    # a reader that never saw the id fetches it from the registry
    fresh = OutputCodec(SchemaStore())
    confluent.attach_registry(fresh.store, SchemaRegistry(fake_registry.url))
    assert asyncio.run(fresh.decode_async(value)) == record
    assert ("GET", f"/schemas/ids/{schema_id}") in fake_registry.requests


def test_framed_single_object_and_json_input_are_all_decoded(
    fake_registry: FakeRegistry,
) -> None:
    store = SchemaStore()
    confluent.attach_registry(store, SchemaRegistry(fake_registry.url))
    decoder = EventDecoder(store)
    order = event("order", kind="new", status="completed", lead_time_hours=2.0)
    schema_id = fake_registry.add("cx.touchpoint.orders-value", event_schema("order"))
    body = {k: v for k, v in order.items() if k != "type"}

    got = decoder.decode(framed(schema_id, event_schema("order"), body))
    assert got["type"] == "order" and validate_event(got) == validate_event(order)
    assert decoder.decode(encode(store.current_event("order"), order)) == got
    assert validate_event(decoder.decode(orjson.dumps(order))) == validate_event(order)

    # an older writer schema (a field the producer does not know yet) is resolved
    older = event_schema("order")
    older["fields"] = [f for f in older["fields"] if f["name"] != "lead_time_hours"]
    older_id = fake_registry.add("cx.touchpoint.orders-value", older)
    old_body = {k: v for k, v in body.items() if k != "lead_time_hours"}
    decoded = decoder.decode(framed(older_id, older, old_body))
    assert decoded["lead_time_hours"] is None and decoded["status"] == "completed"

    # one fetch per id, then the cache
    fetches = [r for r in fake_registry.requests if r[0] == "GET"]
    for _ in range(3):
        decoder.decode(framed(schema_id, event_schema("order"), body))
    assert [r for r in fake_registry.requests if r[0] == "GET"] == fetches


def test_unknown_ids_and_non_event_schemas_are_rejected_with_a_clear_reason(
    fake_registry: FakeRegistry,
) -> None:
    store = SchemaStore()
    confluent.attach_registry(store, SchemaRegistry(fake_registry.url))
    decoder = EventDecoder(store)
    value = confluent.confluent_header(4242) + b"\x02\x04"
    with pytest.raises(InvalidEvent) as raised:
        decoder.decode(value)
    assert raised.value.code == "unknown_schema"
    assert "schema id 4242 is not in the schema registry" in raised.value.text
    # negatively cached: made-up ids cannot make every message a registry round trip
    asked = len(fake_registry.requests)
    with pytest.raises(InvalidEvent):
        decoder.decode(value)
    assert len(fake_registry.requests) == asked

    alert_id = fake_registry.add("x-value", json.loads(store.current_record("Alert").canonical))
    with pytest.raises(InvalidEvent) as raised:
        decoder.decode(confluent.confluent_header(alert_id) + b"\x00")
    assert raised.value.code == "unknown_schema" and "not an event" in raised.value.text
    with pytest.raises(InvalidEvent) as raised:
        decoder.decode(b"\x00\x00\x01")
    assert raised.value.code == "malformed"


def test_registry_down_is_its_own_reason() -> None:
    store = SchemaStore()
    confluent.attach_registry(store, SchemaRegistry("http://127.0.0.1:9", timeout_s=0.5))
    with pytest.raises(InvalidEvent) as raised:
        EventDecoder(store).decode(confluent.confluent_header(7) + b"\x00")
    assert raised.value.code == "registry_unavailable" and "schema id 7" in raised.value.text


def test_lookups_are_budgeted(fake_registry: FakeRegistry) -> None:
    registry = SchemaRegistry(fake_registry.url)
    for schema_id in range(1000, 1000 + confluent.LOOKUP_BUDGET):
        with pytest.raises(confluent.UnknownSchemaId):
            registry.writer(schema_id)
    with pytest.raises(confluent.RegistryError, match="budget"):
        registry.writer(99_999)
    assert len(fake_registry.requests) == confluent.LOOKUP_BUDGET


def test_without_a_registry_nothing_changes() -> None:
    decoder = EventDecoder(SchemaStore())
    assert decoder.registry is None
    with pytest.raises(InvalidEvent) as raised:
        decoder.decode(confluent.confluent_header(1) + b"\x02")
    assert raised.value.code == "malformed"  # as before: neither Avro single-object nor JSON
    outputs = OutputMessages(Topics(load_settings()), OutputCodec(SchemaStore()))
    assert outputs.encode_score(a_score_record())[:2] == b"\xc3\x01"


def test_registry_url_is_checked() -> None:
    with pytest.raises(ValueError):
        SchemaRegistry("file:///etc/passwd")


def test_a_refused_registration_refuses_to_start_naming_the_setting(
    fake_registry: FakeRegistry,
) -> None:
    from types import SimpleNamespace

    from streams.http.server import use_registry
    from streams.settings import SettingsError

    topics = Topics(load_settings())
    fake_registry.refused.add(f"{topics.output('scores')}-value")
    runtime = SimpleNamespace(outputs=OutputMessages(topics, OutputCodec(SchemaStore())))
    with pytest.raises(SettingsError) as raised:
        use_registry(runtime, fake_registry.url)  # type: ignore[arg-type]
    ((name, message),) = raised.value.problems
    assert name == "CEMI_SCHEMA_REGISTRY_URL" and "409" in message


def test_prefetch_fetches_off_the_loop_so_decode_never_waits(fake_registry: FakeRegistry) -> None:
    store = SchemaStore()
    confluent.attach_registry(store, SchemaRegistry(fake_registry.url))
    decoder = EventDecoder(store)
    order = event("order", kind="new", status="completed")
    schema_id = fake_registry.add("cx.touchpoint.orders-value", event_schema("order"))
    values = [framed(schema_id, event_schema("order"), order), orjson.dumps(order), None, b""]
    values.append(confluent.confluent_header(777) + b"\x00")

    asyncio.run(decoder.prefetch(values))
    asked = list(fake_registry.requests)
    assert sorted(asked) == [("GET", f"/schemas/ids/{schema_id}"), ("GET", "/schemas/ids/777")]
    assert decoder.decode(values[0])["event_id"] == order["event_id"]
    with pytest.raises(InvalidEvent, match="777"):
        decoder.decode(values[-1])
    assert fake_registry.requests == asked  # decode found everything in the caches
    asyncio.run(EventDecoder(SchemaStore()).prefetch(values))  # no registry: nothing


def test_a_registry_that_does_not_answer_is_not_asked_again_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = SchemaRegistry("http://127.0.0.1:9")
    calls: list[str] = []

    def down(method: str, path: str, body: Any = None, timeout_s: float | None = None) -> Any:
        calls.append(path)
        raise confluent.RegistryError("timed out")

    monkeypatch.setattr(registry, "_request", down)
    with pytest.raises(confluent.RegistryError, match="timed out"):
        registry.writer(1)
    with pytest.raises(confluent.RegistryError, match="not asked again"):
        registry.writer(2)
    assert calls == ["/schemas/ids/1"]
    monkeypatch.setattr(confluent.time, "monotonic", lambda: 1e12)  # long after
    with pytest.raises(confluent.RegistryError, match="timed out"):
        registry.writer(2)
    assert calls == ["/schemas/ids/1", "/schemas/ids/2"]


def test_command_line_readers_decode_every_output_format(fake_registry: FakeRegistry) -> None:
    store = SchemaStore()
    alert_schema = store.current_record("Alert")
    raw = alert_schema.raw
    schema_id = fake_registry.add("cx.cemi.alerts-value", raw)
    alert = {
        "alert_id": "abc",
        "rule": "touchpoint",
        "state": "firing",
        "unit": "HPG",
        "service": "mobile",
        "touchpoint": "install",
        "score": 2.5,
        "threshold": 3.0,
        "class": "average",
        "window": "rolling",
        "window_start_ms": 0,
        "window_end_ms": 1,
        "sample": 30,
        "started_at_ms": 1,
        "resolved_at_ms": None,
        "acknowledged_by": None,
        "inhibited": False,
        "catalog_version": "t",
        "top_kpis": [],
        "excluded_kpis": [],
        "owner": "HPG technical centre",
        "programme": None,
        "indicator": None,
        "published_at_ms": 2,
    }
    single = encode(alert_schema, alert)
    as_json = OutputCodec(SchemaStore(), "json").encoder("Alert")(alert)
    reader = reader_codec(fake_registry.url)
    assert reader.decode(framed(schema_id, raw, alert)) == alert
    assert reader.decode(single) == alert
    assert reader.decode(as_json) == alert
    assert reader_codec(None).decode(single) == alert
    with pytest.raises(InvalidEvent, match="CEMI_SCHEMA_REGISTRY_URL"):
        reader_codec(None).decode(framed(schema_id, raw, alert))
