"""The worker's HTTP API (JSON, on the Faust web server): current scores, a unit's tree,
alerts and their acknowledgement, health and readiness, and its OpenAPI document.

Any worker answers for every unit: each worker follows the output topics itself
(`cx.cemi.scores`, `cx.cemi.kpi`, `cx.cemi.alerts`) and keeps in memory only the latest
record per key of the newest window per (window kind, unit), and the latest record per alert
id, so memory is bounded by units x catalog size, never by history. Score records are kept
as the bytes read (their key says level, unit, service, touchpoint, window) and decoded when
a query first needs them, so following costs little more than the fetch.

The routes' logic (`Api`); `streams.http.server` registers them on the worker's web server.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from streams.alert_client import ack_record, send_ack_record
from streams.core.events import UNIT_PATTERN, InvalidEvent
from streams.core.windows import LocalCalendar
from streams.http.console import asset, events
from streams.http.follow import follow_topics
from streams.http.metrics import CemiCollector, exposition, registry_for
from streams.http.models import (
    AckBody,
    AlertsQuery,
    ProgrammesQuery,
    ProgrammeUpdateBody,
    ScoresQuery,
    StandingsQuery,
    UnitQuery,
)
from streams.http.openapi import openapi_document
from streams.http.params import (
    ALERT_ID,
    ALERT_STATES,
    PROBE_INTERVAL_S,
    PROBE_TIMEOUT_S,
    YIELD_EVERY,
    BadRequest,
    answer,
    body_as,
    query,
)
from streams.http.view import Latest, OutputView, Ranked
from streams.programme_client import programme_update, send_update
from streams.worker.kafka_compat import tables_recovered

if TYPE_CHECKING:
    from streams.settings import Settings
    from streams.worker.runtime import Runtime

log = logging.getLogger(__name__)


class Api:
    """The routes' logic; one per worker process."""

    def __init__(self, app: Any, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self.settings: Settings = runtime.settings
        self.view = OutputView()
        self.broker_ok = False
        self._registry: CollectorRegistry | None = None  # made at the first scrape
        self.broker_checked_at = 0.0
        token = self.settings.api_token
        self._token = token.get_secret_value().encode() if token is not None else None

    # -- auth and bodies -------------------------------------------------------------------

    def authorize(self, request: Any, *, write: bool, query_token: bool = False) -> None:
        """The bearer token, where the route needs it; `query_token`: also as `?token=` (an
        EventSource cannot send headers)."""
        if not write and not self.settings.api_read_auth:
            return
        if self._token is None:
            raise BadRequest(403, "acknowledgements are disabled: CEMI_API_TOKEN is not set")
        header = request.headers.get("Authorization", "")
        if query_token and not header and request.query.get("token"):
            header = f"Bearer {request.query['token']}"
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
        params = query(request, ScoresQuery)
        where = params.filters("limit", "offset")
        limit, offset = params.limit, params.offset
        total = 0
        page: list[Latest] = []
        for latest in self.view.select(where):
            if offset <= total < offset + limit:
                page.append(latest)
            total += 1
            if not total % YIELD_EVERY:
                await asyncio.sleep(0)  # a large view must not hold the stream up
        records = [r for r in await self.records_of(page) if r is not None]
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
        where = {**query(request, UnitQuery).filters(), "unit": unit}
        selected = list(self.view.select(where))
        if not selected:
            raise BadRequest(404, f"no scores for unit {unit}")
        windows: dict[str, Any] = {}
        for latest, record in zip(selected, await self.records_of(selected), strict=True):
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

    async def standings(self, request: Any) -> web.Response:
        """The newest window's standings of a kind for one key: no service, the units by unit
        CEMI; a service, by that service's CEMI; a service and touchpoint, by its CEMI."""
        self.authorize(request, write=False)
        params = query(request, StandingsQuery)
        slot = (params.window, params.service, params.touchpoint)
        record = await self.standings_of(slot)
        if record is None:
            # (a touchpoint without its service names no ranking: none is ever kept)
            raise BadRequest(404, f"no standings for {'/'.join(s or '-' for s in slot)}")
        return answer(record)

    async def alerts(self, request: Any) -> web.Response:
        self.authorize(request, write=False)
        params = query(request, AlertsQuery)
        where, state = params.filters("state"), params.state
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
        by = body_as(await self.body(request), AckBody).by
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

    async def programmes(self, request: Any) -> web.Response:
        """The newest window's programme records of a kind per unit, programme and indicator."""
        self.authorize(request, write=False)
        params = query(request, ProgrammesQuery)
        where, window = params.filters("window"), params.window
        records = [
            record
            for (kind, *_), record in sorted(self.view.programmes.items())
            if kind == window and all(record.get(k) == v for k, v in where.items())
        ]
        return answer({"count": len(records), "programmes": records})

    async def report(self, request: Any, programme: str) -> web.Response:
        """A programme indicator's value, reported by a team without a producer."""
        self.authorize(request, write=True)
        body = body_as(await self.body(request), ProgrammeUpdateBody)
        if programme not in self.runtime.plan.programmes:
            raise BadRequest(404, "no such programme")
        try:  # the catalog's checks, as for `cemi programme report`
            event = programme_update(
                self.runtime.plan.programmes,
                unit=body.unit,
                programme=programme,
                indicator=body.indicator,
                value=body.value,
                event_time_ms=body.event_time,
            )
        except InvalidEvent as error:
            # a programme or indicator the catalog does not have is a resource not found
            status = 404 if error.code in ("unknown_programme", "unknown_indicator") else 400
            raise BadRequest(status, str(error)) from None
        producer = self.runtime.producer
        if producer is None:
            raise BadRequest(503, "the worker is starting")
        await send_update(producer, self.runtime.topics, event)
        return answer({"accepted": True, "event": event}, status=202)

    async def console(self, request: Any) -> web.Response:
        """The ops console's page (open: it asks for the token where the data needs one)."""
        return asset("index.html")

    async def console_asset(self, request: Any, name: str) -> web.Response:
        return asset(name)

    async def events(self, request: Any) -> web.StreamResponse:
        """The console's live state (Server-Sent Events)."""
        self.authorize(request, write=False, query_token=True)
        return await events(self, request)

    async def stats(self, request: Any) -> web.Response:
        """The pipeline's counts; open, like /metrics (operations read it without a token)."""
        return answer(self.runtime.stats())

    async def metrics(self, request: Any) -> web.Response:
        # the exposition format's content type, without the charset aiohttp adds itself
        content_type = CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4"
        if self._registry is None:
            runtime = self.runtime
            self._registry = registry_for(
                CemiCollector(
                    runtime.scoring,
                    lambda: runtime.ingest.stats if runtime.ingest else None,
                    runtime.plan.version,
                    runtime.latency,
                    runtime.dead_lettered,
                )
            )
        body = exposition(self._registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

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
        self.broker_ok = self.runtime.broker_reachable = ok
        self.broker_checked_at = time.monotonic()

    # -- following the outputs -------------------------------------------------------------

    async def standings_of(self, slot: tuple[str, str | None, str | None]) -> dict[str, Any] | None:
        """The newest standings record of a kind and key, decoded (None: none, or corrupt)."""
        kept = self.view.standings.get(slot)
        return None if kept is None else (await self.records_of([kept]))[0]

    async def records_of(self, kept: Sequence[Latest | Ranked]) -> list[dict[str, Any] | None]:
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
        names = ("scores", "kpi", "alerts", "standings", "programmes")
        scores, kpi, alerts, standings, programmes = (topics.output(n) for n in names)
        codec = self.runtime.outputs.codec
        async for message in follow_topics(
            self.settings,
            self.runtime.bootstrap,
            [scores, kpi, alerts, standings, programmes],
            self.view,
            bounded=(scores, kpi, standings, programmes),
            calendar=LocalCalendar(self.runtime.plan.catalog.timezone),
        ):
            if message.value is None:  # a tombstone: the window left the retention
                if message.topic in (scores, kpi):
                    self.view.forget_score(message.key)
                continue
            if message.topic == standings:
                self.view.add_standings(message.key, message.value)
            elif message.topic in (alerts, programmes):
                try:
                    record = await codec.decode_async(message.value)
                except Exception as error:  # a corrupt record must not stop the following
                    self.view.undecodable += 1
                    log.debug("undecodable %s record: %r", message.topic, error)
                    continue
                if message.topic == alerts:
                    self.view.add_alert(record)
                else:
                    self.view.add_programme(record)
            else:
                self.view.add_score(message.key, message.value)


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
            target_met=record.get("target_met"),
            target_gap_points=record.get("target_gap_points"),
        )
    node["revision"] = record.get("revision")
    node["final"] = record.get("final")
    return node
