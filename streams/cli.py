"""The `cemi` command line."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from streams.core.catalog import Catalog, CatalogError, load_catalog
from streams.core.events import InvalidEvent
from streams.core.plan import ScoringPlan
from streams.settings import Settings, SettingsError, load_settings
from streams.simulate.generator import DEFAULT_UNITS

app = typer.Typer(no_args_is_help=True, add_completion=False, help="CEMI streaming scorer.")
catalog_app = typer.Typer(no_args_is_help=True, help="Work with scoring catalogs.")
app.add_typer(catalog_app, name="catalog")

EXIT_INVALID_CONFIG = 2

CatalogOption = Annotated[
    Path | None,
    typer.Option("--catalog", help="Catalog file (YAML/JSON); default: the packaged one."),
]


def _load(path: Path | None) -> Catalog:
    try:
        return load_catalog(path)
    except CatalogError as error:
        typer.echo(f"invalid catalog {path or '(default)'}:", err=True)
        for where, message in error.problems:
            typer.echo(f"  {where}: {message}", err=True)
        raise typer.Exit(EXIT_INVALID_CONFIG) from None


def _share(weight: float, total: float) -> str:
    return f"{100 * weight / total:5.1f}%"


@catalog_app.command("check")
def catalog_check(file: Annotated[Path, typer.Argument(help="Catalog file to validate.")]) -> None:
    """Validate a catalog and print a summary with normalised weights (exit 2 if invalid)."""
    catalog = _load(file)
    plan = ScoringPlan(catalog)
    service_total = sum(s.weight for s in plan.services)
    typer.echo(
        f"catalog {catalog.version} (timezone {catalog.timezone}): {len(plan.services)} services, "
        f"{len(plan.touchpoints)} touchpoints, {len(plan.kpis)} KPIs"
    )
    for svc in plan.services:
        typer.echo(f"{svc.service:<20} {_share(svc.weight, service_total)}")
        tp_total = sum(plan.touchpoints[i].weight for i in svc.touchpoints)
        for ti in svc.touchpoints:
            tp = plan.touchpoints[ti]
            kpi_total = sum(plan.kpis[k].weight for k in tp.kpis)
            kpis = ", ".join(
                f"{plan.kpis[k].kpi} {_share(plan.kpis[k].weight, kpi_total).strip()}"
                for k in tp.kpis
            )
            typer.echo(
                f"  {tp.touchpoint:<16} {_share(tp.weight, tp_total)}  {len(tp.kpis)} KPIs: {kpis}"
            )


@app.command()
def score(
    events: Annotated[Path, typer.Option("--events", help="Events file, JSON lines.")],
    catalog: CatalogOption = None,
    window: Annotated[str, typer.Option("--window", help="month or day.")] = "month",
    out: Annotated[Path | None, typer.Option("--out", help="Output file (default stdout).")] = None,
) -> None:
    """Score an events file (batch replay); exit 1 if any line was rejected."""
    from streams.batch import Replay, dump_records
    from streams.gc_policy import tune_gc

    if window not in ("month", "day"):
        typer.echo(f"--window: must be month or day, got {window!r}", err=True)
        raise typer.Exit(EXIT_INVALID_CONFIG)
    replay = Replay(ScoringPlan(_load(catalog)))
    tune_gc()

    def report(lineno: int, error: InvalidEvent) -> None:
        typer.echo(f"{events}:{lineno}: rejected: {error}", err=True)

    try:
        with events.open("rb") as source:
            replay.add_lines(source, report)
    except OSError as error:
        typer.echo(f"--events: cannot read {events}: {error.strerror}", err=True)
        raise typer.Exit(EXIT_INVALID_CONFIG) from None
    records = replay.records(window)  # type: ignore[arg-type]
    sink = out.open("wb") if out else sys.stdout.buffer
    try:
        sink.writelines(dump_records(records))
    finally:
        if out:
            sink.close()
        else:
            sink.flush()
    stats = replay.stats
    typer.echo(
        f"scored {stats.scored} events, rejected {stats.rejected}, duplicates {stats.duplicates}; "
        f"{len(records)} records",
        err=True,
    )
    if stats.rejected:
        raise typer.Exit(1)


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as error:
        typer.echo("invalid settings:", err=True)
        for name, message in error.problems:
            typer.echo(f"  {name}: {message}", err=True)
        raise typer.Exit(EXIT_INVALID_CONFIG) from None


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one).")] = 0,
) -> None:
    """Run the embedded broker in the foreground; print its URL (for CEMI_BROKER_URL)."""
    import asyncio
    import signal

    from streams.broker import EmbeddedBroker
    from streams.topics import create_topics

    settings = _settings()
    with EmbeddedBroker(port or None) as embedded:
        asyncio.run(create_topics(settings, embedded.url))
        typer.echo(embedded.url)
        typer.echo(f"export CEMI_BROKER_URL={embedded.url}   # Ctrl-C stops the broker", err=True)
        # sigwait only receives signals that are blocked; unblocked, SIGTERM would end the
        # process at once and leave the broker running without us
        stopping = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
        signal.sigwait(stopping)


@app.command()
def worker(
    loglevel: Annotated[str, typer.Option(help="Log level of the worker.")] = "warning",
) -> None:
    """Run the streaming scorer (starts the embedded broker when CEMI_BROKER_URL is unset)."""
    import asyncio

    from streams.app import create_app, run_worker
    from streams.broker import broker_for
    from streams.topics import create_topics

    settings = _settings()
    plan = ScoringPlan(_load(settings.catalog))
    with broker_for(settings) as bootstrap:
        if not settings.broker_url:
            typer.echo(f"embedded broker at {bootstrap}", err=True)
        asyncio.run(create_topics(settings, bootstrap))
        run_worker(create_app(settings, bootstrap, plan), loglevel)


@app.command()
def produce(
    events: Annotated[Path, typer.Option("--events", help="Events file, JSON lines.")],
    wire: Annotated[str, typer.Option("--format", help="avro, json or mixed.")] = "avro",
) -> None:
    """Send the events of a JSON-lines file to the input topics (by type)."""
    import asyncio

    import orjson

    from streams.produce import EventProducer

    settings = _settings()
    if not settings.broker_url:
        typer.echo("CEMI_BROKER_URL: must be set (start one with `cemi broker`)", err=True)
        raise typer.Exit(EXIT_INVALID_CONFIG)
    if wire not in ("avro", "json", "mixed"):
        typer.echo(f"--format: must be avro, json or mixed, got {wire!r}", err=True)
        raise typer.Exit(EXIT_INVALID_CONFIG)

    async def send() -> int:
        async with EventProducer(settings, settings.broker_url or "", wire) as producer:  # type: ignore[arg-type]
            with events.open("rb") as source:
                return await producer.send_all(
                    orjson.loads(line) for line in source if line.strip()
                )

    typer.echo(f"sent {asyncio.run(send())} events", err=True)


@app.command()
def tail(
    what: Annotated[str, typer.Argument(help="scores, kpi, alerts, deadletter or late.")],
    from_beginning: Annotated[bool, typer.Option("--from-beginning")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per record.")] = False,
    idle_exit: Annotated[
        float | None, typer.Option("--idle-exit", help="Exit after this many idle seconds.")
    ] = None,
) -> None:
    """Decode and print an output topic."""
    import asyncio

    import orjson

    from streams.kafka_security import client_kwargs
    from streams.tail import read_topic
    from streams.topics import OUTPUT, Topics

    settings = _settings()
    if what not in OUTPUT:
        typer.echo(f"what: must be one of {tuple(OUTPUT)}, got {what!r}", err=True)
        raise typer.Exit(EXIT_INVALID_CONFIG)
    if not settings.broker_url:
        typer.echo("CEMI_BROKER_URL: must be set", err=True)
        raise typer.Exit(EXIT_INVALID_CONFIG)

    async def run() -> None:
        topic = Topics(settings).output(what)
        async for _, record in read_topic(
            settings.broker_url or "",
            topic,
            from_beginning=from_beginning,
            idle_exit_s=idle_exit,
            security=client_kwargs(settings),
        ):
            if as_json:
                record = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in record.items()}
                sys.stdout.buffer.write(orjson.dumps(record) + b"\n")
                sys.stdout.flush()
            else:
                typer.echo(" ".join(f"{k}={v}" for k, v in record.items() if v is not None))

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@app.command()
def simulate(
    units: Annotated[str, typer.Option(help="Comma-separated unit codes.")] = ",".join(
        DEFAULT_UNITS
    ),
    rate: Annotated[
        float | None, typer.Option(help="Events per second, live (event time = now).")
    ] = None,
    count: Annotated[int | None, typer.Option(help="How many events (then stop).")] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds to run (live).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    scenario: Annotated[
        list[str] | None,
        typer.Option(help="Incident: install_backlog, payment_gateway, complaint_surge."),
    ] = None,
    wire: Annotated[str, typer.Option("--format", help="avro, json or mixed.")] = "avro",
    out: Annotated[Path | None, typer.Option(help="Write JSON lines here instead.")] = None,
) -> None:
    """Produce realistic events: live at a rate, as fast as possible up to a count, or to a file."""
    import asyncio

    from streams.simulate.runner import simulate as run_simulation

    settings = _settings()
    if out is None and not settings.broker_url:
        typer.echo("CEMI_BROKER_URL: must be set (or give --out FILE)", err=True)
        raise typer.Exit(EXIT_INVALID_CONFIG)
    try:
        produced = asyncio.run(
            run_simulation(
                settings,
                settings.broker_url,
                units=tuple(u.strip() for u in units.split(",") if u.strip()),
                rate=rate,
                count=count,
                seed=seed,
                scenarios=tuple(scenario or ()),
                wire=wire,
                out=out,
                start_ms=None,
                duration_s=duration,
            )
        )
    except ValueError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(EXIT_INVALID_CONFIG) from None
    except KeyboardInterrupt:
        return
    typer.echo(f"produced {produced} events", err=True)


def _bootstrap(settings: Settings) -> str:
    if not settings.broker_url:
        typer.echo("CEMI_BROKER_URL: must be set (start one with `cemi broker`)", err=True)
        raise typer.Exit(EXIT_INVALID_CONFIG)
    return settings.broker_url


@app.command()
def alerts(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per alert.")] = False,
    include_resolved: Annotated[bool, typer.Option("--all", help="Resolved ones too.")] = False,
) -> None:
    """List the current alerts (read from the alerts topic)."""
    import asyncio

    import orjson
    from rich.console import Console
    from rich.table import Table

    from streams.alert_client import current_alerts

    settings = _settings()
    found = asyncio.run(
        current_alerts(settings, _bootstrap(settings), include_resolved=include_resolved)
    )
    if as_json:
        for alert in found:
            sys.stdout.buffer.write(orjson.dumps(alert) + b"\n")
        return
    table = Table(title=f"{len(found)} alerts")
    for column in ("id", "state", "unit", "service", "touchpoint", "score", "top KPIs"):
        table.add_column(column)
    for a in found:
        state = a["state"] + (" (inhibited)" if a.get("inhibited") else "")
        top = ", ".join(f"{k['kpi']} {k['points']:.2f}" for k in a["top_kpis"][:3])
        score = "-" if a["score"] is None else f"{a['score']:.2f} < {a['threshold']:.2f}"
        table.add_row(
            a["alert_id"],
            state,
            a["unit"],
            a["service"],
            a["touchpoint"] or "(service)",
            score,
            top,
        )
    Console().print(table)


@app.command()
def ack(
    alert_id: Annotated[str, typer.Argument(help="The alert's id (see `cemi alerts`).")],
    by: Annotated[str, typer.Option("--by", help="Who acknowledges it.")] = "operator",
) -> None:
    """Acknowledge a firing alert: it stays firing, marked acknowledged, until it resolves."""
    import asyncio

    from streams.alert_client import UnknownAlert, send_ack

    settings = _settings()
    try:
        asyncio.run(send_ack(settings, _bootstrap(settings), alert_id, by))
    except UnknownAlert as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"acknowledged {alert_id} as {by}")


@app.command()
def demo(
    rate: Annotated[float, typer.Option(help="Simulated events per second.")] = 300.0,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
) -> None:
    """Broker + worker + simulator with an install backlog in HPG, shown live (Ctrl-C stops)."""
    from streams.demo import run_demo

    run_demo(_settings(), rate=rate, duration_s=duration)


def main() -> None:
    app()
