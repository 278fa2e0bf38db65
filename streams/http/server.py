"""The HTTP API on the worker's web server (Faust's aiohttp): `register_api(app, runtime)`, one
call in `create_app`, adds the routes (`streams.http.api.Api`), a service that follows the
output topics and probes the broker for them, and, with `CEMI_SCHEMA_REGISTRY_URL`, switches
the outputs to the schema registry's wire format (registering the schemas first).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from faust.web import View
from mode import Service

from streams.http.api import Api
from streams.http.params import PREFIX, PROBE_INTERVAL_S, REGISTER_WITHIN_S, BadRequest, answer
from streams.settings import SettingsError
from streams.wire.registry import RegistryError, SchemaRegistry

if TYPE_CHECKING:
    from streams.worker.runtime import Runtime

log = logging.getLogger(__name__)


Handler = Callable[..., Awaitable[web.StreamResponse]]


def _guarded(handler: Handler) -> Handler:
    async def run(request: Any, **kwargs: Any) -> web.StreamResponse:
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

        async def get_method(self: View, request: Any, **kwargs: Any) -> web.StreamResponse:
            return await guarded_get(request, **kwargs)

        namespace["get"] = get_method
    if post is not None:
        guarded_post = _guarded(post)

        async def post_method(self: View, request: Any, **kwargs: Any) -> web.StreamResponse:
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
        (f"{PREFIX}/standings", _view("api_standings", get=api.standings)),
        (f"{PREFIX}/programmes", _view("api_programmes", get=api.programmes)),
        (f"{PREFIX}/programmes/{{programme}}/updates", _view("api_report", post=api.report)),
        (f"{PREFIX}/alerts/{{alert_id}}/ack", _view("api_ack", post=api.acknowledge)),
        (f"{PREFIX}/openapi.json", _view("api_openapi", get=api.openapi)),
        (f"{PREFIX}/stats", _view("api_stats", get=api.stats)),
        (f"{PREFIX}/events", _view("api_events", get=api.events)),
        ("/", _view("console", get=api.console)),
        ("/console/{name}", _view("console_asset", get=api.console_asset)),
        ("/metrics", _view("metrics", get=api.metrics)),
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
