"""The HTTP API against running workers: routes, 400s, auth, readiness, any worker answers
for every unit, and the OpenAPI document checked against the implementation (schemathesis)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import schemathesis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.generation.modes import GenerationMode

from streams.broker import EmbeddedBroker
from streams.tools.tail import latest_by_key
from streams.topics import INPUT, OUTPUT, Topics
from streams.wire.codec import encode
from streams.wire.outputs import reader_codec
from streams.wire.registry import confluent_header
from streams.wire.schemas import SchemaStore, event_schema
from tests.integration.conftest import Stream, Worker
from tests.integration.test_stream import send
from tests.scoring.test_alerting import backlog_events
from tests.wire.test_registry import FakeRegistry, framed

pytestmark = pytest.mark.broker

TOKEN = "test-token-0123456789abcdef"


def call(
    worker: Worker,
    path: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    token: str | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """(status, decoded JSON body, headers) of one request to a worker."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{worker.port}{path}", data=body, method=method
    )
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            raw, status, headers = reply.read(), reply.status, dict(reply.headers)
    except urllib.error.HTTPError as error:
        raw, status, headers = error.read(), error.code, dict(error.headers)
    try:
        decoded = json.loads(raw) if raw else None
    except ValueError:
        decoded = raw.decode(errors="replace")
    return status, decoded, headers


def ready(worker: Worker) -> bool:
    try:
        return call(worker, "/readyz")[0] == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def deployment(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Two workers with a token, fed the install-backlog and payment-outage scenario."""
    stream = Stream(broker, tmp_path_factory.mktemp("api"), api_token=TOKEN)
    first, second = stream.worker(), stream.worker()
    try:
        sent = send(stream, backlog_events(payment_outage=True), "avro")
        stream.wait_for(
            lambda: sum(stream.totals()[k] for k in ("scored", "duplicates", "late")) == sent,
            timeout=240,
            what="all events folded",
        )
        try:
            stream.wait_for(lambda: ready(first) and ready(second), what="both workers ready")
        except AssertionError as error:
            states = [call(w, "/readyz")[1] for w in (first, second)]
            raise AssertionError(f"readiness: {states}\n{error}") from None
        time.sleep(3)  # let the last coalesced publication land
        yield stream
    finally:
        stream.close()


def test_scores_are_the_latest_records_of_the_topics_from_either_worker(deployment: Any) -> None:
    stream = deployment

    async def topics() -> dict[bytes, Any]:
        latest: dict[bytes, Any] = {}
        for name in ("cemi.scores", "cemi.kpi"):
            latest.update(await latest_by_key(stream.bootstrap, stream.settings.topic(name), 2))
        return latest

    expected = {
        (r["level"], r["unit"], r["service"], r["touchpoint"], r["kpi"], r["window"]): r["score"]
        for r in asyncio.run(topics()).values()
        if r["unit"] in ("HPG", "QBH") and r["window"] == "day"
    }
    # the scenario spans one local day: newest day window = the only one
    assert expected
    for worker in stream.workers:  # each worker owns some partitions, answers for all units
        got: dict[tuple[Any, ...], Any] = {}
        for unit in ("HPG", "QBH"):
            status, body, headers = call(worker, f"/api/v1/scores?unit={unit}&window=day")
            assert status == 200 and headers["Content-Type"].startswith("application/json")
            assert body["count"] == len(body["scores"])
            for r in body["scores"]:
                key = (r["level"], r["unit"], r["service"], r["touchpoint"], r["kpi"], r["window"])
                got[key] = r["score"]
        assert got == expected

    worker = stream.workers[0]
    status, body, _ = call(worker, "/api/v1/scores?level=unit")
    assert status == 200 and {r["unit"] for r in body["scores"]} == {"HPG", "QBH"}
    assert {r["window"] for r in body["scores"]} == {"day", "month", "quarter", "year"}
    for kind in ("month", "year"):
        status, body, _ = call(worker, f"/api/v1/scores?level=network&window={kind}")
        assert status == 200 and [r["unit"] for r in body["scores"]] == [None]
    status, body, _ = call(
        worker, "/api/v1/scores?unit=HPG&service=fixed_broadband&touchpoint=install&level=kpi"
    )
    assert status == 200 and body["count"] > 0
    assert all(r["touchpoint"] == "install" and r["level"] == "kpi" for r in body["scores"])


def test_standings_rank_the_units_as_the_batch_replay_does(deployment: Any) -> None:
    from streams.batch import Replay

    replay = Replay(default_plan())
    replay.add_lines(orjson.dumps(e) for e in backlog_events(payment_outage=True))
    batch = {
        (r["window"], r["service"], r["touchpoint"]): r
        for kind in ("day", "year")
        for r in replay.records(kind, complete=True)
        if r["level"] == "standings"
    }
    worker = deployment.workers[1]
    for kind, service, touchpoint in (
        ("day", None, None),
        ("day", "fixed_broadband", None),
        ("day", "fixed_broadband", "install"),
        ("year", "mobile", "payment"),
    ):
        query = f"window={kind}" + (f"&service={service}" if service else "")
        query += f"&touchpoint={touchpoint}" if touchpoint else ""
        expected = batch[(kind, service, touchpoint)]["units"]

        def answered(query: str = query, expected: Any = expected) -> bool:
            status, body, _ = call(worker, f"/api/v1/standings?{query}")
            return status == 200 and [
                (e["unit"], e["rank"], round(e["score"], 9)) for e in body["units"]
            ] == [(e["unit"], e["rank"], round(e["score"], 9)) for e in expected]

        deployment.wait_for(answered, timeout=30, what=f"standings {query}")
    status, body, _ = call(worker, "/api/v1/standings?touchpoint=install")  # no such key
    assert status == 404 and "month/-/install" in body["error"]


def default_plan() -> Any:
    from streams.core.catalog import load_catalog
    from streams.core.plan import ScoringPlan

    return ScoringPlan(load_catalog())


def test_unit_tree(deployment: Any) -> None:
    worker = deployment.workers[1]
    status, body, _ = call(worker, "/api/v1/units/HPG?window=day")
    assert status == 200 and body["unit"] == "HPG" and list(body["windows"]) == ["day"]
    day = body["windows"]["day"]
    assert day["score"] is not None and day["class"] in (
        "poor",
        "average",
        "fair",
        "good",
        "excellent",
    )
    install = day["services"]["fixed_broadband"]["touchpoints"]["install"]
    assert "delta_prev" in install and "delta_network" in install
    kpi = install["kpis"]["install_on_time"]
    assert {"score", "class", "value", "numerator", "denominator"} <= set(kpi)
    status, body, _ = call(worker, "/api/v1/units/HPG")
    assert status == 200 and set(body["windows"]) == {"day", "month", "quarter", "year"}
    assert call(worker, "/api/v1/units/NOPE")[0] == 404


def test_bad_parameters_are_400_with_a_message(deployment: Any) -> None:
    worker = deployment.workers[0]
    for path in (
        "/api/v1/scores?level=province",
        "/api/v1/scores?window=week",
        "/api/v1/scores?unit=hp g",
        "/api/v1/scores?unit=HPG&unit=QBH",
        "/api/v1/scores?colour=red",
        "/api/v1/units/hpg",
        "/api/v1/units/HPG?window=week",
        "/api/v1/alerts?state=burning",
    ):
        status, body, _ = call(worker, path.replace(" ", "%20"))
        assert status == 400, path
        assert isinstance(body["error"], str) and body["error"], path


def test_alerts_and_acknowledgement_with_a_token(deployment: Any) -> None:
    first, second = deployment.workers

    def firing() -> bool:
        status, body, _ = call(second, "/api/v1/alerts?state=firing")
        return status == 200 and any(a["unit"] == "QBH" for a in body["alerts"])

    def install_resolved() -> bool:
        status, body, _ = call(first, "/api/v1/alerts?state=resolved")
        return status == 200 and any(
            (a["unit"], a["touchpoint"]) == ("HPG", "install") for a in body["alerts"]
        )

    # HPG and QBH fold on their own partitions (and workers): neither waits for the other
    deployment.wait_for(firing, timeout=60, what="the QBH payment alert in the API")
    deployment.wait_for(install_resolved, timeout=60, what="the HPG install alert resolved")
    status, body, _ = call(first, "/api/v1/alerts")
    assert status == 200
    target = next(a for a in body["alerts"] if (a["unit"], a["touchpoint"]) == ("QBH", "payment"))
    assert target["state"] == "firing" and target["top_kpis"]

    ack = f"/api/v1/alerts/{target['alert_id']}/ack"
    body_ok = json.dumps({"by": "ops-anna"}).encode()
    status, reply, headers = call(first, ack, method="POST", body=body_ok)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert call(first, ack, method="POST", body=body_ok, token="wrong-token")[0] == 403
    big = json.dumps({"by": "x" * 70_000}).encode()
    assert call(first, ack, method="POST", body=big, token=TOKEN)[0] == 413
    assert call(first, ack, method="POST", body=b"{nope", token=TOKEN)[0] == 400
    assert call(first, ack, method="POST", body=b'{"by": 3}', token=TOKEN)[0] == 400
    assert call(first, "/api/v1/alerts/abc123/ack", method="POST", token=TOKEN)[0] == 404
    assert call(first, "/api/v1/alerts/not-an-id/ack", method="POST", token=TOKEN)[0] == 400

    # any worker takes the ack: it is routed to the partition of the alert's unit
    status, reply, _ = call(second, ack, method="POST", body=body_ok, token=TOKEN)
    assert status == 202 and reply["ack"]["by"] == "ops-anna"

    def acknowledged() -> bool:
        alerts = call(first, "/api/v1/alerts?state=acknowledged&unit=QBH")[1]["alerts"]
        return any(
            a["alert_id"] == target["alert_id"] and a["acknowledged_by"] == "ops-anna"
            for a in alerts
        )

    deployment.wait_for(acknowledged, timeout=60, what="the acknowledgement in the API")


def test_health_readiness_and_no_faust_table_pages(deployment: Any) -> None:
    worker = deployment.workers[0]
    assert call(worker, "/healthz")[:2] == (200, {"status": "ok"})
    status, body, _ = call(worker, "/readyz")
    assert status == 200 and body["ready"] and all(body["checks"].values())
    for path in ("/table/state/", "/table/state/x/", "/router/", "/graph/", "/stats/"):
        assert call(worker, path)[0] == 404, path
    # the web server listens on loopback only by default
    assert worker.env.get("CEMI_WEB_HOST") is None
    assert listening_addresses(worker.port) == {"127.0.0.1"}


def listening_addresses(port: int) -> set[str]:
    """The IPv4/IPv6 addresses a TCP port listens on here (from /proc/net/tcp*)."""
    import ipaddress

    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                local, state = line.split()[1], line.split()[3]
                address, _, hex_port = local.partition(":")
                if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(address)
                # the kernel prints each 32-bit word in host (little-endian) order
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(str(ipaddress.ip_address(words)))
    return found


def test_openapi_document_matches_the_implementation(deployment: Any) -> None:
    """Schemathesis' checks (status codes, content types and bodies conform to the document,
    no 5xx, invalid input rejected) on generated valid and invalid requests of every
    operation. Driven from hypothesis directly: schemathesis' lazy pytest loader does not
    work with pytest 9."""
    worker = deployment.workers[0]
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{worker.port}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{o.method.upper()} {o.path}" for o in operations} == {
        "GET /api/v1/scores",
        "GET /api/v1/units/{unit}",
        "GET /api/v1/alerts",
        "GET /api/v1/standings",
        "GET /api/v1/stats",
        "GET /api/v1/programmes",
        "POST /api/v1/programmes/{programme}/updates",
        "POST /api/v1/alerts/{alert_id}/ack",
        "GET /healthz",
        "GET /readyz",
    }
    headers = {"Authorization": f"Bearer {TOKEN}"}
    statuses: Counter[int] = Counter()
    for operation in operations:
        raw = operation.definition.raw
        takes_input = bool(raw.get("parameters") or raw.get("requestBody"))
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if takes_input else [])
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(
                max_examples=30,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Any) -> None:
                statuses[case.call_and_validate(headers=headers).status_code] += 1

            check()
    # generated requests really ran, valid ones answered and invalid ones refused
    assert sum(statuses.values()) >= 100 and statuses[200] and statuses[400], statuses


def test_a_worker_with_a_schema_registry(stream_factory: Any) -> None:
    """Framed input decoded beside single-object Avro and JSON, outputs and dead letters in
    the Confluent wire format with their schemas registered, an unknown id dead-lettered with
    its reason, and the API reading the framed outputs."""
    fake = FakeRegistry()
    fake.start()
    try:
        stream = stream_factory(schema_registry_url=fake.url)
        worker = stream.worker()
        events = backlog_events()[:3000]
        store = SchemaStore()
        ids = {
            etype: fake.add(f"{stream.settings.topic(suffix)}-value", event_schema(etype))
            for etype, suffix in INPUT.items()
        }

        def wire(i: int, e: dict[str, Any]) -> bytes:
            if i % 3 == 0:
                return framed(ids[e["type"]], event_schema(e["type"]), e)
            if i % 3 == 1:
                return encode(store.current_event(e["type"]), e)
            return orjson.dumps(e)

        async def produce() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=stream.bootstrap)
            await producer.start()
            try:
                topics = Topics(stream.settings)
                for i, e in enumerate(events):
                    await producer.send(topics.input(e["type"]), wire(i, e))
                await producer.send(topics.input("order"), confluent_header(9999) + b"\x02")
                await producer.flush()
            finally:
                await producer.stop()

        asyncio.run(produce())
        stream.wait_for(
            lambda: (
                sum(stream.totals()[k] for k in ("scored", "duplicates", "late")) == len(events)
            ),
            timeout=180,
            what="all events folded",
        )
        stats = worker.stats() or {}
        assert stats["dead_lettered"] == {"unknown_schema": 1}
        assert {f"{stream.settings.topic(OUTPUT[n])}-value" for n in OUTPUT} <= set(fake.subjects)

        async def raw(topic: str) -> list[bytes]:
            consumer = AIOKafkaConsumer(
                stream.settings.topic(topic),
                bootstrap_servers=stream.bootstrap,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
            )
            await consumer.start()
            try:
                batches = await consumer.getmany(timeout_ms=3000)
                return [m.value for records in batches.values() for m in records]
            finally:
                await consumer.stop()

        reader = reader_codec(fake.url)
        scores = asyncio.run(raw("cemi.scores"))
        assert scores and all(v[0] == 0 for v in scores)
        assert reader.decode(scores[-1])["level"] in (
            "unit",
            "service",
            "touchpoint",
            "network",
        )
        (dead,) = asyncio.run(raw("deadletter"))
        letter = reader.decode(dead)
        assert letter["reason_code"] == "unknown_schema"
        assert "schema id 9999 is not in the schema registry" in letter["reason"]

        def answered() -> bool:
            status, body, _ = call(worker, "/api/v1/scores?unit=HPG&level=unit")
            return status == 200 and body["count"] > 0

        stream.wait_for(answered, timeout=60, what="framed scores in the API")
    finally:
        fake.stop()


def test_readyz_reports_a_broker_outage_and_the_recovery(
    deployment: Any, broker: EmbeddedBroker
) -> None:
    """Last in the module: the broker is stopped (SIGSTOP) for a while and continued."""
    worker = deployment.workers[0]
    assert broker.process is not None
    pid = broker.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        deployment.wait_for(lambda: call(worker, "/readyz")[0] == 503, timeout=20, what="not ready")
        status, body, _ = call(worker, "/readyz")
        assert status == 503 and body["checks"]["broker"] is False
        assert call(worker, "/healthz")[0] == 200  # alive all the same
        # answers from memory meanwhile
        assert call(worker, "/api/v1/scores?unit=HPG&level=unit")[0] == 200
    finally:
        os.kill(pid, signal.SIGCONT)
    deployment.wait_for(lambda: ready(worker), timeout=90, what="ready again")


# -- the routes' logic without a worker ------------------------------------------------------


def api_for(**settings: Any) -> Any:
    from types import SimpleNamespace

    from streams.http.api import Api
    from streams.settings import load_settings
    from streams.wire.outputs import OutputCodec

    loaded = load_settings(**settings)
    store = SchemaStore()
    runtime = SimpleNamespace(
        settings=loaded,
        store=store,
        outputs=SimpleNamespace(codec=OutputCodec(store)),
        topics=Topics(loaded),
        producer=None,
        ingest=None,
    )
    return Api(SimpleNamespace(), runtime)


def score_record(unit: str, level: str = "unit", start: str = "2026-11-05") -> dict[str, Any]:
    return {
        "level": level,
        "window": "day",
        "window_start": f"{start}T00:00:00+07:00",
        "window_start_ms": 0,
        "unit": unit,
        "service": None if level == "unit" else "mobile",
        "touchpoint": None,
        "kpi": None,
        "coverage": 1.0,
        "score": 4.0,
        "class": "good",
        "delta_prev": None,
        "delta_network": None,
        "target_ratio": None,
        "catalog_version": "t",
        "revision": 1,
        "final": False,
        "published_at_ms": 0,
        "newest_event_ingest_ms": None,
    }


def feed(api: Any, record: dict[str, Any]) -> None:
    from streams.scoring.publish import record_topic_key

    schema = api.runtime.store.current_record("CemiScore")
    api.view.add_score(record_topic_key(record), encode(schema, record))


async def ask(api: Any, handler: str, path: str, token: str | None = None, **kw: Any) -> Any:
    from aiohttp.test_utils import make_mocked_request

    from streams.http.server import _guarded

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    reply = await _guarded(getattr(api, handler))(
        make_mocked_request("GET", path, headers=headers), **kw
    )
    return reply.status, json.loads(reply.body)


async def test_read_routes_can_require_the_token() -> None:
    api = api_for(api_token=TOKEN, api_read_auth=True)
    feed(api, score_record("HPG"))
    assert (await ask(api, "scores", "/api/v1/scores"))[0] == 401
    assert (await ask(api, "scores", "/api/v1/scores", "x" * 20))[0] == 403
    status, body = await ask(api, "scores", "/api/v1/scores", TOKEN)
    assert status == 200 and body["count"] == 1
    assert (await ask(api, "unit", "/api/v1/units/HPG", unit="HPG"))[0] == 401
    assert (await ask(api, "alerts", "/api/v1/alerts"))[0] == 401
    assert (await ask(api, "healthz", "/healthz"))[0] == 200
    # without the setting the read routes are open
    assert (await ask(api_for(api_token=TOKEN), "scores", "/api/v1/scores"))[0] == 200


async def test_only_the_newest_window_per_unit_is_kept_and_pages() -> None:
    api = api_for()
    for unit in ("HPG", "QBH", "HNI"):
        feed(api, score_record(unit, start="2026-11-04"))
        feed(api, score_record(unit, "service", start="2026-11-04"))
    for unit in ("HPG", "QBH"):
        feed(api, score_record(unit, start="2026-11-05"))
    feed(api, score_record("HPG", "service", start="2026-11-03"))  # older: ignored
    status, body = await ask(api, "scores", "/api/v1/scores")
    assert status == 200 and body["total"] == 4
    assert [(r["unit"], r["level"], r["window_start"][:10]) for r in body["scores"]] == [
        ("HNI", "unit", "2026-11-04"),
        ("HNI", "service", "2026-11-04"),
        ("HPG", "unit", "2026-11-05"),
        ("QBH", "unit", "2026-11-05"),
    ]
    status, body = await ask(api, "scores", "/api/v1/scores?limit=2&offset=1")
    assert [r["unit"] for r in body["scores"]] == ["HNI", "HPG"] and body["total"] == 4
    for bad in ("limit=0", "limit=20001", "offset=-1", "limit=x"):
        assert (await ask(api, "scores", f"/api/v1/scores?{bad}"))[0] == 400, bad
