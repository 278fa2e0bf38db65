"""The ops console: one page (`GET /`) served by every worker, fed live by Server-Sent Events
(`GET /api/v1/events`) from the API's view of the output topics.

The page is plain HTML, JS and CSS shipped as package data (`streams/http/console/`): no build
step, nothing loaded from elsewhere (its Content-Security-Policy allows this origin only),
and every value shown is set as text, never as markup (unit codes and catalog names come
from users). With `CEMI_API_READ_AUTH=true` the page asks for the token once and sends it with
every call; an EventSource cannot send headers, so the events route also takes it as
`?token=`.

The state pushed is small (units × services per window kind, the standings' ranks, the
alerts, the pipeline's counts): a whole new state whenever it changed, at most every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import date, datetime
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web

from streams.core.windows import CALENDAR_KINDS
from streams.http.params import BadRequest

if TYPE_CHECKING:
    from streams.http.api import Api

ASSETS: Final = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# the page may load and call this origin only; no inline script, no framing
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PUSH_EVERY_S: Final = 1.0
KEEPALIVE_S: Final = 15.0


def asset(name: str) -> web.Response:
    """A file of the page, with the console's security headers."""
    kind = ASSETS.get(name)
    if kind is None:
        raise BadRequest(404, "no such file")
    body = files("streams.http").joinpath("console", name).read_bytes()
    return web.Response(
        body=body,
        headers={
            "Content-Type": kind,
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )


async def console_state(api: Api) -> dict[str, Any]:
    """What the page shows: per window kind, each unit's CEMI, class, rank and services; the
    alerts (active, and resolved today); the pipeline's counts."""
    runtime = api.runtime
    plan = runtime.plan
    services = [svc.service for svc in plan.services]
    windows: dict[str, Any] = {}
    for kind in CALENDAR_KINDS:
        selected = [
            latest
            for latest in api.view.select({"window": kind})
            if latest.parts[0] in ("unit", "service")
        ]
        ranking = await api.standings_of((kind, None, None))
        ranks = {e["unit"]: e for e in (ranking or {}).get("units", [])}
        units: dict[str, Any] = {}
        for record in await api.records_of(selected):
            if record is None or record.get("unit") is None:
                continue
            unit = units.setdefault(
                record["unit"], {"unit": record["unit"], "services": {}, "score": None}
            )
            cell = {"score": record.get("score"), "class": record.get("class")}
            if record["level"] == "unit":
                standing = ranks.get(record["unit"], {})
                unit.update(
                    cell,
                    window_start=record.get("window_start"),
                    delta_prev=record.get("delta_prev"),
                    rank=standing.get("rank"),
                    rank_prev=standing.get("rank_prev"),
                )
            else:
                unit["services"][record["service"]] = cell
        ordered = sorted(units.values(), key=lambda u: (u.get("rank") or 10**6, u["unit"]))
        windows[kind] = {"units": ordered}
    zone = ZoneInfo(plan.catalog.timezone)
    today = datetime.now(zone).date()
    alerts = [
        a
        for a in api.view.alerts.values()
        if a.get("state") != "resolved" or _local_date(a.get("resolved_at_ms"), zone) == today
    ]
    alerts.sort(key=lambda a: (a.get("state") == "resolved", -(a.get("started_at_ms") or 0)))
    return {
        "catalog_version": plan.version,
        "catalog": {
            "touchpoints": {tp.touchpoint: tp.name for tp in plan.touchpoints if tp.name},
            "kpis": {kpi.kpi: kpi.description for kpi in plan.kpis},
        },
        "services": services,
        "windows": windows,
        "alerts": alerts,
        "pipeline": _pipeline(api),
    }


def _local_date(ms: Any, zone: ZoneInfo) -> date | None:
    if not isinstance(ms, int):
        return None
    return datetime.fromtimestamp(ms / 1000, zone).date()


def _pipeline(api: Api) -> dict[str, Any]:
    runtime = api.runtime
    stats = runtime.stats()
    ingest = runtime.ingest.stats if runtime.ingest else None
    now_ms = time.time() * 1000
    watermarks = [
        r.state.watermark_ms
        for r in runtime.scoring.partitions.values()
        if r.state.watermark_ms is not None
    ]
    return {
        "consumed": stats["consumed"],
        "scored": stats["scored"],
        "dead_lettered": sum(stats["dead_lettered"].values()),
        "late": stats["late"],
        "consumer_lag": sum(ingest.lag.values()) if ingest else None,
        "watermark_lag_s": (now_ms - min(watermarks)) / 1000 if watermarks else None,
        "at_ms": int(now_ms),
    }


async def events(api: Api, request: Any) -> web.StreamResponse:
    """Server-Sent Events: `state` with the whole console state whenever it changed."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        }
    )
    await response.prepare(request)
    last = b""
    quiet_since = time.monotonic()
    with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
        while True:
            data = orjson.dumps(await console_state(api))
            if data != last:
                await response.write(b"event: state\ndata: " + data + b"\n\n")
                last, quiet_since = data, time.monotonic()
            elif time.monotonic() - quiet_since > KEEPALIVE_S:
                await response.write(b": keepalive\n\n")
                quiet_since = time.monotonic()
            await asyncio.sleep(PUSH_EVERY_S)
    return response
