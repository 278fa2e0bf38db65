"""The worker's HTTP API (JSON, on the Faust web server): current scores, a unit's tree,
alerts and their acknowledgement, health and readiness, and its OpenAPI document.

Any worker answers for every unit: each worker follows the output topics itself
(`cx.cemi.scores`, `cx.cemi.kpi`, `cx.cemi.alerts`) and keeps in memory only the latest
record per key of the newest window per (window kind, unit), and the latest record per alert
id, so memory is bounded by units x catalog size, never by history. Score records are kept
as the bytes read (their key says level, unit, service, touchpoint, window) and decoded when
a query first needs them, so following costs little more than the fetch.

Registered from one call in `create_app`: `register_api(app, runtime)`, which also switches
the outputs to the schema registry's wire format when `CEMI_SCHEMA_REGISTRY_URL` is set.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.web import View
from mode import Service

from streams.alert_client import ack_record, send_ack_record
from streams.core.events import SERVICES, TOUCHPOINT_PATTERN, UNIT_PATTERN
from streams.core.records import LEVELS
from streams.core.windows import CALENDAR_KINDS, LocalCalendar
from streams.kafka_security import client_kwargs
from streams.output_follow import newest_window_positions
from streams.settings import SettingsError
from streams.wire.registry import RegistryError, SchemaRegistry

if TYPE_CHECKING:
    from streams.app import Runtime
    from streams.settings import Settings

log = logging.getLogger(__name__)

PREFIX: Final = "/api/v1"
ALERT_STATES: Final = ("firing", "acknowledged", "resolved")
ALERT_FILTERS: Final = (*ALERT_STATES, "active", "all")  # active = firing or acknowledged
ALERT_ID_PATTERN: Final = r"^[0-9a-f]{1,64}$"
ALERT_ID: Final = re.compile(ALERT_ID_PATTERN)
BY_MAX_CHARS: Final = 64
BY_PATTERN: Final = r"^[ -~]*[!-~][ -~]*$"  # printable ASCII, not only spaces
BY: Final = re.compile(BY_PATTERN)
PROBE_INTERVAL_S: Final = 2.0
PROBE_TIMEOUT_S: Final = 2.5
REGISTER_WITHIN_S: Final = 30.0
YIELD_EVERY: Final = 10_000  # records looked at between yields to the event loop
LEVEL_ORDER: Final = {level: i for i, level in enumerate(reversed(LEVELS))}  # top-down
JSON: Final = "application/json"
HEADERS: Final = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

# --------------------------------------------------------------------------------------------
# The view of the output topics


KeyParts = tuple[str, str, str, str, str, str, str]  # level, unit, service, tp, kpi, window, start


@dataclass
class Latest:
    """The latest value of one key: its key's parts, its bytes, decoded on first use."""

    parts: KeyParts
    raw: bytes
    record: dict[str, Any] | None = None


@dataclass
class Window:
    start: str  # window_start as published (ISO, local offset): one format, ordered as text
    records: dict[bytes, Latest] = field(default_factory=dict)
    _order: list[Latest] | None = None  # records in answer order, until a key is added

    def ordered(self) -> list[Latest]:
        if self._order is None:
            self._order = sorted(self.records.values(), key=lambda latest: _order(latest.parts))
        return self._order


def key_parts(key: bytes | None) -> KeyParts | None:
    """`level/unit/service/touchpoint/kpi/window/window_start` ("-" for none)."""
    if not key:
        return None
    try:
        parts = key.decode().split("/")
    except UnicodeDecodeError:
        return None
    if len(parts) != 7:
        return None
    return parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], parts[6]


def _order(parts: KeyParts) -> tuple[str, str, str, int]:
    """Within a unit's window: top-down (unit, then each service, its touchpoints, KPIs)."""
    level, _, service, touchpoint, kpi, _, _ = parts
    return service, touchpoint, kpi, LEVEL_ORDER.get(level, 9)


class OutputView:
    """Latest score/KPI records per key of the newest window per (kind, unit); alerts by id."""

    def __init__(self) -> None:
        self.windows: dict[tuple[str, str], Window] = {}
        self.alerts: dict[str, dict[str, Any]] = {}
        self.caught_up = False
        self.undecodable = 0

    def add_score(self, key: bytes | None, value: bytes | None) -> None:
        parts = key_parts(key)
        if parts is None or not value or key is None:
            return
        slot = (parts[5], parts[1])
        window = self.windows.get(slot)
        start = parts[6]
        if window is None or start > window.start:
            window = self.windows[slot] = Window(start)
        elif start < window.start:
            return  # an older window: only the newest is kept
        latest = window.records.get(key)
        if latest is not None:
            latest.raw, latest.record = value, None
        else:
            window.records[key] = Latest(parts, value)
            window._order = None

    def forget_score(self, key: bytes | None) -> None:
        parts = key_parts(key)
        if parts is None or key is None:
            return
        window = self.windows.get((parts[5], parts[1]))
        if window is not None and window.start == parts[6]:
            if window.records.pop(key, None) is not None:
                window._order = None
            if not window.records:
                del self.windows[(parts[5], parts[1])]

    def add_alert(self, record: dict[str, Any]) -> None:
        alert_id = record.get("alert_id")
        if isinstance(alert_id, str):
            self.alerts[alert_id] = record

    def select(self, where: dict[str, str]) -> Iterator[Latest]:
        """Kept records whose key matches `where` (level, unit, service, touchpoint, window),
        in answer order: by window kind, unit (the network first), then top-down."""
        level, service, touchpoint = (where.get(k) for k in ("level", "service", "touchpoint"))
        unit, window = where.get("unit"), where.get("window")
        for (kind, slot_unit), kept in sorted(self.windows.items()):
            if (unit is not None and slot_unit != unit) or (window is not None and kind != window):
                continue
            for latest in kept.ordered():
                parts = latest.parts
                if (
                    (level is None or parts[0] == level)
                    and (service is None or parts[2] == service)
                    and (touchpoint is None or parts[3] == touchpoint)
                ):
                    yield latest


# --------------------------------------------------------------------------------------------
# Requests and answers


class BadRequest(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type=JSON,
        headers={**HEADERS, **(headers or {})},
    )


def _query(request: Any, allowed: dict[str, Callable[[str], bool]]) -> dict[str, str]:
    """The query parameters, each known, given once and valid; else 400 naming the bad one."""
    found: dict[str, str] = {}
    for name, value in request.query.items():
        check = allowed.get(name)
        if check is None:
            raise BadRequest(400, f"unknown parameter {name!r}; known: {', '.join(allowed)}")
        if name in found:
            raise BadRequest(400, f"parameter {name!r} given more than once")
        if not check(value):
            raise BadRequest(400, f"invalid {name}: {value[:64]!r}")
        found[name] = value
    return found


def _one_of(values: Iterable[str]) -> Callable[[str], bool]:
    allowed = frozenset(values)
    return allowed.__contains__


def _matches(pattern: Any) -> Callable[[str], bool]:
    return lambda value: pattern.match(value) is not None


SCORE_PARAMS: Final = {
    "level": _one_of(LEVELS),
    "unit": _matches(UNIT_PATTERN),
    "service": _one_of(SERVICES),
    "touchpoint": _matches(TOUCHPOINT_PATTERN),
    "window": _one_of(CALENDAR_KINDS),
}


def _integer(low: int, high: int) -> Callable[[str], bool]:
    return lambda value: value.isdecimal() and len(value) <= 10 and low <= int(value) <= high


DEFAULT_LIMIT: Final = 5_000
MAX_LIMIT: Final = 20_000
PAGE_PARAMS: Final = {"limit": _integer(1, MAX_LIMIT), "offset": _integer(0, 10**9)}


def tables_recovered(app: Any) -> bool:
    """The worker's assigned table partitions are recovered and no rebalance is under way."""
    # Faust: `completed` is set once the first recovery is done (and never cleared);
    # later rebalances show as `rebalancing`, a recovery asked for but not yet started as
    # `signal_recovery_start`, one under way as `in_recovery`.
    recovery = getattr(getattr(app, "tables", None), "recovery", None)
    completed = getattr(recovery, "completed", None)
    pending = getattr(recovery, "signal_recovery_start", None)
    return bool(
        completed is not None
        and completed.is_set()
        and not (pending is not None and pending.is_set())
        and not getattr(app, "rebalancing", False)
        and not getattr(app, "in_recovery", False)
    )


class Api:
    """The routes' logic; one per worker process."""

    def __init__(self, app: Any, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self.settings: Settings = runtime.settings
        self.view = OutputView()
        self.broker_ok = False
        self.broker_checked_at = 0.0
        token = self.settings.api_token
        self._token = token.get_secret_value().encode() if token is not None else None

    # -- auth and bodies -------------------------------------------------------------------

    def authorize(self, request: Any, *, write: bool) -> None:
        if not write and not self.settings.api_read_auth:
            return
        if self._token is None:
            raise BadRequest(403, "acknowledgements are disabled: CEMI_API_TOKEN is not set")
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise BadRequest(
                401,
                "a bearer token is required (Authorization: Bearer <CEMI_API_TOKEN>)",
                {"WWW-Authenticate": 'Bearer realm="cemi"'},
            )
        if not hmac.compare_digest(given.strip().encode(), self._token):
            raise BadRequest(403, "the bearer token is not valid")

    async def body(self, request: Any) -> dict[str, Any]:
        """The JSON object of the request (empty body: {}); 413 past the size limit."""
        limit = self.settings.api_max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise BadRequest(413, f"request body larger than {limit} bytes")
        raw = await request.content.read(limit + 1)
        if len(raw) > limit:
            raise BadRequest(413, f"request body larger than {limit} bytes")
        if not raw.strip():
            return {}
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise BadRequest(400, f"the body is not JSON: {error}") from None
        if type(body) is not dict:
            raise BadRequest(400, "the body must be a JSON object")
        return body

    # -- routes ----------------------------------------------------------------------------

    async def scores(self, request: Any) -> web.Response:
        self.authorize(request, write=False)
        where = _query(request, {**SCORE_PARAMS, **PAGE_PARAMS})
        limit = int(where.pop("limit", DEFAULT_LIMIT))
        offset = int(where.pop("offset", 0))
        total = 0
        page: list[Latest] = []
        for latest in self.view.select(where):
            if offset <= total < offset + limit:
                page.append(latest)
            total += 1
            if not total % YIELD_EVERY:
                await asyncio.sleep(0)  # a large view must not hold the stream up
        records = [r for r in await self._records(page) if r is not None]
        return answer(
            {
                "count": len(records),
                "total": total,
                "offset": offset,
                "limit": limit,
                "scores": records,
            }
        )

    async def unit(self, request: Any, unit: str) -> web.Response:
        self.authorize(request, write=False)
        if UNIT_PATTERN.match(unit) is None:
            raise BadRequest(400, f"invalid unit: {unit[:64]!r} (expected {UNIT_PATTERN.pattern})")
        where = _query(request, {"window": SCORE_PARAMS["window"]})
        where["unit"] = unit
        selected = list(self.view.select(where))
        if not selected:
            raise BadRequest(404, f"no scores for unit {unit}")
        windows: dict[str, Any] = {}
        for latest, record in zip(selected, await self._records(selected), strict=True):
            if record is None:
                continue
            level, kind = latest.parts[0], latest.parts[5]
            tree = windows.setdefault(kind, {"window": kind, "services": {}})
            node = _node(record)
            if level == "unit":
                tree.update(node)
                tree["window_start"] = record["window_start"]
                tree["services"] = tree.get("services", {})
            elif level == "service":
                service = tree["services"].setdefault(record["service"], {"touchpoints": {}})
                service.update(node)
            elif level == "touchpoint":
                service = tree["services"].setdefault(record["service"], {"touchpoints": {}})
                touchpoint = service["touchpoints"].setdefault(record["touchpoint"], {"kpis": {}})
                touchpoint.update(node)
            elif level == "kpi":
                service = tree["services"].setdefault(record["service"], {"touchpoints": {}})
                touchpoint = service["touchpoints"].setdefault(record["touchpoint"], {"kpis": {}})
                touchpoint["kpis"][record["kpi"]] = node
        return answer({"unit": unit, "windows": windows})

    async def alerts(self, request: Any) -> web.Response:
        self.authorize(request, write=False)
        where = _query(
            request,
            {
                "state": _one_of(ALERT_FILTERS),
                "unit": SCORE_PARAMS["unit"],
                "service": SCORE_PARAMS["service"],
            },
        )
        state = where.pop("state", "active")
        states = {"active": ("firing", "acknowledged"), "all": ALERT_STATES}.get(state, (state,))
        alerts = [
            a
            for a in self.view.alerts.values()
            if a.get("state") in states and all(a.get(k) == v for k, v in where.items())
        ]
        alerts.sort(key=lambda a: (a["unit"], a["service"], a["touchpoint"] or "", a["rule"]))
        return answer({"count": len(alerts), "alerts": alerts})

    async def acknowledge(self, request: Any, alert_id: str) -> web.Response:
        self.authorize(request, write=True)
        if ALERT_ID.match(alert_id) is None:
            raise BadRequest(400, f"invalid alert id: {alert_id[:80]!r}")
        body = await self.body(request)
        unknown = set(body) - {"by"}
        if unknown:
            raise BadRequest(400, f"unknown field(s) {sorted(unknown)}; known: ['by']")
        by = body.get("by", "api")
        if not isinstance(by, str) or len(by) > BY_MAX_CHARS or BY.match(by) is None:
            raise BadRequest(
                400, f"'by' must be 1 to {BY_MAX_CHARS} printable ASCII characters, not all blank"
            )
        alert = self.view.alerts.get(alert_id)
        if alert is None:
            raise BadRequest(404, f"no alert {alert_id}")
        if alert.get("state") == "resolved":
            raise BadRequest(409, f"alert {alert_id} is resolved")
        producer = self.runtime.producer
        if producer is None:
            raise BadRequest(503, "the worker is starting")
        # the same acknowledgement `cemi ack` sends
        ack = ack_record({**alert, "alert_id": alert_id}, by)
        await send_ack_record(producer, self.runtime.topics.acks, ack)
        return answer({"accepted": True, "ack": ack}, status=202)

    async def healthz(self, request: Any) -> web.Response:
        return answer({"status": "ok"})

    async def readyz(self, request: Any) -> web.Response:
        checks = self.ready_checks()
        ready = all(checks.values())
        return answer({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def openapi(self, request: Any) -> web.Response:
        return answer(openapi_document(self.settings))

    # -- readiness -------------------------------------------------------------------------

    def ready_checks(self) -> dict[str, bool]:
        recovered = tables_recovered(self.app)
        fresh = time.monotonic() - self.broker_checked_at < 3 * PROBE_INTERVAL_S
        return {
            "recovered": bool(recovered),
            "broker": self.broker_ok and fresh,
            "ingest": self.runtime.ingest is not None and self.runtime.ingest.stats.running,
            "outputs_followed": self.view.caught_up,
        }

    async def probe_broker(self) -> None:
        """Whether the broker answers a metadata request, every PROBE_INTERVAL_S."""
        producer = self.runtime.producer
        ok = False
        if producer is not None:
            try:
                await asyncio.wait_for(producer.client.fetch_all_metadata(), PROBE_TIMEOUT_S)
                ok = True
            except Exception as error:  # timeouts and every Kafka error mean "not reachable"
                log.debug("broker probe failed: %r", error)
        self.broker_ok = ok
        self.broker_checked_at = time.monotonic()

    # -- following the outputs -------------------------------------------------------------

    async def _records(self, kept: list[Latest]) -> list[dict[str, Any] | None]:
        """The decoded records (None: undecodable), yielding to the loop now and then."""
        records: list[dict[str, Any] | None] = []
        for i, latest in enumerate(kept, 1):
            if latest.record is None:
                try:
                    latest.record = await self.runtime.outputs.codec.decode_async(latest.raw)
                except Exception as error:  # fastavro raises many kinds for corrupt bodies
                    self.view.undecodable += 1
                    log.debug("undecodable output record: %r", error)
            records.append(latest.record)
            if not i % (YIELD_EVERY // 20):
                await asyncio.sleep(0)
        return records

    async def follow(self) -> None:
        topics = self.runtime.topics
        scores, kpi, alerts = (topics.output(n) for n in ("scores", "kpi", "alerts"))
        codec = self.runtime.outputs.codec
        async for message in follow_topics(
            self.settings,
            self.runtime.bootstrap,
            [scores, kpi, alerts],
            self,
            bounded=(scores, kpi),
            calendar=LocalCalendar(self.runtime.plan.catalog.timezone),
        ):
            if message.value is None:  # a tombstone: the window left the retention
                self.view.forget_score(message.key)
                continue
            if message.topic == alerts:
                try:
                    self.view.add_alert(await codec.decode_async(message.value))
                except Exception as error:  # a corrupt record must not stop the following
                    self.view.undecodable += 1
                    log.debug("undecodable alert record: %r", error)
            else:
                self.view.add_score(message.key, message.value)


async def follow_topics(
    settings: Settings,
    bootstrap: str,
    topics: list[str],
    api: Api,
    bounded: Iterable[str] = (),
    calendar: LocalCalendar | None = None,
) -> AsyncIterator[Any]:
    """The records of `topics`, forever: the `bounded` ones from their newest windows on
    (`streams.output_follow`), the others from the beginning; marks the view caught up once
    every partition was read to its high watermark."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        client_id=f"cemi-api-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=200,
        **client_kwargs(settings),
    )
    await consumer.start()
    try:
        await consumer.topics()  # metadata of every topic
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(tps)
        limited = [tp for tp in tps if tp.topic in set(bounded)]
        if limited and calendar is not None:
            started = time.monotonic()
            positions = await newest_window_positions(
                consumer, limited, calendar, settings.workarounds
            )
            for tp in tps:
                consumer.seek(tp, positions.get(tp, 0))
            log.info(
                "following the outputs from %s (found in %.2f s)",
                {f"{tp.topic}[{tp.partition}]": o for tp, o in positions.items()},
                time.monotonic() - started,
            )
        else:
            await consumer.seek_to_beginning(*tps)
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for message in records:
                    yield message
            if not api.view.caught_up:
                api.view.caught_up = await _at_highwater(consumer, consumer.assignment())
    finally:
        await consumer.stop()


async def _at_highwater(consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> bool:
    if not assigned:
        return False
    for tp in assigned:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True


def _node(record: dict[str, Any]) -> dict[str, Any]:
    node = {
        k: record.get(k)
        for k in ("score", "class", "delta_prev", "delta_network", "target_ratio", "coverage")
    }
    if record["level"] == "kpi":
        node.pop("coverage")
        node.update(
            value=record.get("value"),
            numerator=record.get("numerator"),
            denominator=record.get("denominator"),
        )
    node["revision"] = record.get("revision")
    node["final"] = record.get("final")
    return node


# --------------------------------------------------------------------------------------------
# Wiring


Handler = Callable[..., Awaitable[web.Response]]


def _guarded(handler: Handler) -> Handler:
    async def run(request: Any, **kwargs: Any) -> web.Response:
        try:
            return await handler(request, **kwargs)
        except BadRequest as error:
            return answer({"error": error.message}, error.status, error.headers)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return answer({"error": "internal error"}, 500)

    return run


def _view(name: str, get: Handler | None = None, post: Handler | None = None) -> type[View]:
    namespace: dict[str, Any] = {"__doc__": f"CEMI API: {name}"}
    if get is not None:
        guarded_get = _guarded(get)

        async def get_method(self: View, request: Any, **kwargs: Any) -> web.Response:
            return await guarded_get(request, **kwargs)

        namespace["get"] = get_method
    if post is not None:
        guarded_post = _guarded(post)

        async def post_method(self: View, request: Any, **kwargs: Any) -> web.Response:
            return await guarded_post(request, **kwargs)

        namespace["post"] = post_method
    return type(name, (View,), namespace)


def use_registry(runtime: Runtime, url: str) -> None:
    """Register the output schemas and frame the outputs (blocking, before the worker runs);
    a registry not reached within REGISTER_WITHIN_S, or refusing a schema, refuses to start."""
    deadline = time.monotonic() + REGISTER_WITHIN_S
    delay = 0.5
    while True:
        try:
            runtime.outputs.use_registry(SchemaRegistry(url))
            return
        except RegistryError as error:
            refused = error.status is not None and 400 <= error.status < 500
            if refused or time.monotonic() + delay > deadline:
                raise SettingsError(
                    [("CEMI_SCHEMA_REGISTRY_URL", f"cannot register the output schemas: {error}")]
                ) from None
            log.warning("schema registry not ready (%s); again in %.1f s", error, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def register_api(app: Any, runtime: Runtime) -> Api:
    """Add the API routes and the services behind them to a Faust app (and, with
    CEMI_SCHEMA_REGISTRY_URL, register the output schemas and frame the outputs)."""
    settings = runtime.settings
    if settings.schema_registry_url:
        use_registry(runtime, settings.schema_registry_url)
    api = Api(app, runtime)
    app.cemi_api = api  # for tests

    routes: list[tuple[str, type[View]]] = [
        (f"{PREFIX}/scores", _view("api_scores", get=api.scores)),
        (f"{PREFIX}/units/{{unit}}", _view("api_unit", get=api.unit)),
        (f"{PREFIX}/alerts", _view("api_alerts", get=api.alerts)),
        (f"{PREFIX}/alerts/{{alert_id}}/ack", _view("api_ack", post=api.acknowledge)),
        (f"{PREFIX}/openapi.json", _view("api_openapi", get=api.openapi)),
        ("/healthz", _view("healthz", get=api.healthz)),
        ("/readyz", _view("readyz", get=api.readyz)),
    ]
    for path, view in routes:
        app.page(path, name=view.__name__)(view)

    class ApiService(Service):
        """Follows the output topics and probes the broker, for the routes."""

        @Service.task
        async def _follow(self) -> None:
            while not self.should_stop:
                try:
                    await api.follow()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("following the output topics failed; again in 2 s")
                    api.view.caught_up = False
                    await asyncio.sleep(2)

        @Service.task
        async def _probe(self) -> None:
            while not self.should_stop:
                await api.probe_broker()
                await asyncio.sleep(PROBE_INTERVAL_S)

    app.service(ApiService)
    return api


# --------------------------------------------------------------------------------------------
# OpenAPI


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(description, {"$ref": "#/components/schemas/Error"})


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _param(name: str, schema: dict[str, Any], description: str, where: str = "query") -> Any:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


def _get(
    operation_id: str,
    summary: str,
    parameters: list[Any],
    ok: dict[str, Any],
    errors: dict[str, Any],
    security: list[Any] | None = None,
) -> dict[str, Any]:
    operation = {
        "operationId": operation_id,
        "summary": summary,
        "parameters": parameters,
        "responses": {"200": ok, **errors},
    }
    if security is not None:
        operation["security"] = security
    return {"get": operation}


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3 description of these routes (served at /api/v1/openapi.json)."""
    string, integer, boolean = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
    nullable_string = {"type": ["string", "null"]}
    nullable_number = {"type": ["number", "null"]}
    unit = {"type": "string", "pattern": UNIT_PATTERN.pattern}
    window = {"type": "string", "enum": list(CALENDAR_KINDS)}
    service = {"type": "string", "enum": list(SERVICES)}
    read_security: list[Any] = [{"bearer": []}] if settings.api_read_auth else []
    bad = {"400": _error("bad parameter")}
    if settings.api_read_auth:
        bad.update({"401": _error("no bearer token"), "403": _error("wrong bearer token")})
    score = _obj(
        ["level", "window", "window_start", "unit", "score", "class"],
        level={"type": "string", "enum": list(LEVELS)},
        window=string,
        window_start=string,
        window_start_ms=integer,
        unit=nullable_string,
        service=nullable_string,
        touchpoint=nullable_string,
        kpi=nullable_string,
        score=nullable_number,
        **{"class": nullable_string},
        delta_prev=nullable_number,
        delta_network=nullable_number,
        target_ratio=nullable_number,
        coverage={"type": "number"},
        value=nullable_number,
        numerator={"type": "number"},
        denominator={"type": "number"},
        catalog_version=string,
        revision=integer,
        final=boolean,
    )
    alert = _obj(
        ["alert_id", "rule", "state", "unit", "service", "touchpoint"],
        alert_id=string,
        rule=string,
        state={"type": "string", "enum": list(ALERT_STATES)},
        unit=string,
        service=string,
        touchpoint=nullable_string,
        score=nullable_number,
        threshold={"type": "number"},
        **{"class": nullable_string},
        started_at_ms={"type": ["integer", "null"]},
        resolved_at_ms={"type": ["integer", "null"]},
        acknowledged_by=nullable_string,
        inhibited=boolean,
    )
    tree = _obj(
        ["window", "services"],
        window=string,
        window_start=string,
        score=nullable_number,
        **{"class": nullable_string},
        services={"type": "object"},
    )
    readiness = _obj(
        ["ready", "checks"],
        ready=boolean,
        checks={"type": "object", "additionalProperties": boolean},
    )
    paths = {
        f"{PREFIX}/scores": _get(
            "getScores",
            "Current scores (newest day and month window per unit)",
            [
                _param("level", {"type": "string", "enum": list(LEVELS)}, "level"),
                _param("unit", unit, "unit code"),
                _param("service", service, "service"),
                _param(
                    "touchpoint",
                    {"type": "string", "pattern": TOUCHPOINT_PATTERN.pattern},
                    "touchpoint id",
                ),
                _param("window", window, "window kind"),
                _param(
                    "limit",
                    {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_LIMIT,
                        "default": DEFAULT_LIMIT,
                    },
                    "records per page (ordered by window, unit, then top-down)",
                ),
                _param(
                    "offset",
                    {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0},
                    "records to skip",
                ),
            ],
            _json(
                "the matching score records",
                _obj(
                    ["count", "total", "scores"],
                    count=integer,
                    total=integer,
                    offset=integer,
                    limit=integer,
                    scores={"type": "array", "items": {"$ref": "#/components/schemas/Score"}},
                ),
            ),
            bad,
            read_security,
        ),
        f"{PREFIX}/units/{{unit}}": _get(
            "getUnit",
            "A unit's tree: service -> touchpoint -> KPI, per window",
            [
                _param("unit", unit, "unit code", "path"),
                _param("window", window, "only this window kind"),
            ],
            _json(
                "the unit's tree per window kind",
                _obj(
                    ["unit", "windows"],
                    unit=string,
                    windows={"type": "object", "additionalProperties": tree},
                ),
            ),
            {**bad, "404": _error("no scores for this unit")},
            read_security,
        ),
        f"{PREFIX}/alerts": _get(
            "getAlerts",
            "Alerts (latest record per alert)",
            [
                _param(
                    "state",
                    {"type": "string", "enum": list(ALERT_FILTERS), "default": "active"},
                    "active = firing or acknowledged (default)",
                ),
                _param("unit", unit, "unit code"),
                _param("service", service, "service"),
            ],
            _json(
                "the matching alerts",
                _obj(
                    ["count", "alerts"],
                    count=integer,
                    alerts={"type": "array", "items": {"$ref": "#/components/schemas/Alert"}},
                ),
            ),
            bad,
            read_security,
        ),
        f"{PREFIX}/alerts/{{alert_id}}/ack": {
            "post": {
                "operationId": "ackAlert",
                "summary": "Acknowledge a firing alert (it stays firing until it resolves)",
                "security": [{"bearer": []}],
                "parameters": [
                    _param(
                        "alert_id", {"type": "string", "pattern": ALERT_ID_PATTERN}, "id", "path"
                    )
                ],
                "requestBody": {
                    "required": False,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "by": {
                                        "type": "string",
                                        "minLength": 1,
                                        "maxLength": BY_MAX_CHARS,
                                        "pattern": BY_PATTERN,
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": _json(
                        "the acknowledgement was sent",
                        _obj(["accepted", "ack"], accepted=boolean, ack={"type": "object"}),
                    ),
                    "400": _error("bad id or body"),
                    "401": _error("no bearer token"),
                    "403": _error("wrong token, or no CEMI_API_TOKEN configured"),
                    "404": _error("no such alert"),
                    "409": _error("the alert is resolved"),
                    "413": _error("body too large"),
                    "503": _error("the worker is starting"),
                },
            }
        },
        "/healthz": _get(
            "healthz", "Liveness", [], _json("the worker serves requests", {"type": "object"}), {}
        ),
        "/readyz": _get(
            "readyz",
            "Readiness: partitions recovered, broker reachable, outputs read",
            [],
            _json("ready", readiness),
            {"503": _json("not ready", readiness)},
        ),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CEMI scorer API",
            "version": "1",
            "description": "Current CEMI scores, unit trees and alerts, from any worker.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": _obj(["error"], error=string),
                "Score": score,
                "Alert": alert,
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
