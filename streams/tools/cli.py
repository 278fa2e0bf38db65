"""The `cemi` command line: one typer function per command, each a thin call into the module
that does the work. Kept in one file (its length is the number of commands and their
documented options) so `--help` and this file show the whole surface at once."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from streams.core.catalog import Catalog, CatalogError, load_catalog
from streams.core.events import InvalidEvent
from streams.core.plan import ScoringPlan
from streams.settings import Settings, SettingsError, load_settings
from streams.tools.simulate.generator import DEFAULT_UNITS

app = typer.Typer(no_args_is_help=True, add_completion=False, help="CEMI streaming scorer.")
catalog_app = typer.Typer(no_args_is_help=True, help="Work with scoring catalogs.")
app.add_typer(catalog_app, name="catalog")
programme_app = typer.Typer(no_args_is_help=True, help="Action programmes.")
app.add_typer(programme_app, name="programme")

EXIT_INVALID_CONFIG = 2


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class WindowChoice(StrEnum):
    month = "month"
    day = "day"
    quarter = "quarter"
    year = "year"


class WireChoice(StrEnum):
    avro = "avro"
    json = "json"
    mixed = "mixed"


class OutputChoice(StrEnum):
    scores = "scores"
    kpi = "kpi"
    alerts = "alerts"
    deadletter = "deadletter"
    late = "late"
    standings = "standings"
    programmes = "programmes"


class ScenarioChoice(StrEnum):
    install_backlog = "install_backlog"
    payment_gateway = "payment_gateway"
    complaint_surge = "complaint_surge"


def _version() -> str:
    try:
        return version("cemi-streams")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def _show_version(shown: bool) -> None:
    if shown:
        typer.echo(f"cemi {_version()}")
        raise typer.Exit()


@app.callback()
def _main(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """CEMI streaming scorer."""


@contextlib.contextmanager
def file_progress(source: IO[bytes], label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr over the bytes of `source` when stderr is a terminal (else
    nothing is drawn): yields the callback to advance it by a line's bytes, or None."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    try:
        total: int | None = Path(source.name).stat().st_size
    except (OSError, AttributeError, TypeError):
        total = None
    columns = (TextColumn(label), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=total)
        done = [0]

        def advance(size: int) -> None:
            done[0] += size
            if done[0] >= 1 << 20:  # redrawing per line would cost more than the work
                progress.advance(task, done[0])
                done[0] = 0

        yield advance


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
    window: Annotated[
        WindowChoice, typer.Option("--window", help="Window kind of the records.")
    ] = WindowChoice.month,
    out: Annotated[Path | None, typer.Option("--out", help="Output file (default stdout).")] = None,
) -> None:
    """Score an events file (batch replay); exit 1 if any line was rejected."""
    from streams.batch import Replay, dump_records
    from streams.worker.gc_policy import tune_gc

    replay = Replay(ScoringPlan(_load(catalog)))
    tune_gc()

    def report(lineno: int, error: InvalidEvent) -> None:
        typer.echo(f"{events}:{lineno}: rejected: {error}", err=True)

    try:
        with events.open("rb") as source, file_progress(source, "scoring") as advance:
            replay.add_lines(_counted(source, advance), report)
    except OSError as error:
        typer.echo(f"--events: cannot read {events}: {error.strerror}", err=True)
        raise typer.Exit(EXIT_INVALID_CONFIG) from None
    records = replay.records(window.value, complete=True)
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


def _counted(lines: IO[bytes], advance: Callable[[int], None] | None) -> Iterator[bytes]:
    if advance is None:
        yield from lines
        return
    for line in lines:
        advance(len(line))
        yield line


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
        typer.echo(
            f"export CEMI_BROKER_URL={embedded.url} CEMI_BROKER_WORKAROUNDS=true"
            "   # Ctrl-C stops the broker",
            err=True,
        )
        # sigwait only receives signals that are blocked; unblocked, SIGTERM would end the
        # process at once and leave the broker running without us
        stopping = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
        signal.sigwait(stopping)


@app.command()
def worker(
    loglevel: Annotated[LogLevel, typer.Option(help="Log level of the worker.")] = LogLevel.warning,
) -> None:
    """Run the streaming scorer (starts the embedded broker when CEMI_BROKER_URL is unset)."""
    import asyncio

    from streams.broker import broker_for
    from streams.topics import create_topics
    from streams.worker.app import create_app
    from streams.worker.run import run_worker

    settings = _settings()
    plan = ScoringPlan(_load(settings.catalog))
    with broker_for(settings) as bootstrap:
        if not settings.broker_url:
            typer.echo(f"embedded broker at {bootstrap}", err=True)
        asyncio.run(create_topics(settings, bootstrap))
        run_worker(create_app(settings, bootstrap, plan), loglevel.value)


@app.command()
def produce(
    events: Annotated[Path, typer.Option("--events", help="Events file, JSON lines.")],
    wire: Annotated[WireChoice, typer.Option("--format", help="Wire format.")] = WireChoice.avro,
) -> None:
    """Replay a JSON-lines events file to the input topics (by type), each record stamped with
    its event time; a bad line is reported with its number and skipped (exit 1 if any)."""
    import asyncio

    from streams.tools.produce import EventProducer, replay_file

    settings = _settings()
    bootstrap = _bootstrap(settings)

    def report(lineno: int, error: InvalidEvent) -> None:
        typer.echo(f"{events}:{lineno}: rejected: {error}", err=True)

    async def send() -> tuple[int, int]:
        async with EventProducer(settings, bootstrap, wire.value) as producer:
            with events.open("rb") as source, file_progress(source, "sending") as advance:
                done = await replay_file(producer, source, report, advance)
        return done.sent, done.rejected

    try:
        sent, rejected = asyncio.run(send())
    except OSError as error:
        typer.echo(f"--events: cannot read {events}: {error.strerror}", err=True)
        raise typer.Exit(EXIT_INVALID_CONFIG) from None
    typer.echo(f"sent {sent} events, rejected {rejected} lines", err=True)
    if rejected:
        raise typer.Exit(1)


@app.command()
def tail(
    what: Annotated[OutputChoice, typer.Argument(help="The output topic.")],
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
    from streams.tools.tail import read_topic
    from streams.topics import Topics
    from streams.wire.outputs import reader_codec

    settings = _settings()
    bootstrap = _bootstrap(settings)

    async def run() -> None:
        topic = Topics(settings).output(what.value)
        async for _, record in read_topic(
            bootstrap,
            topic,
            from_beginning=from_beginning,
            idle_exit_s=idle_exit,
            security=client_kwargs(settings),
            codec=reader_codec(settings.schema_registry_url),
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
        list[ScenarioChoice] | None, typer.Option(help="An incident to simulate (repeatable).")
    ] = None,
    days: Annotated[
        float, typer.Option(help="Without --rate: the span of event time, ending now.", min=0.001)
    ] = 2.0,
    start: Annotated[
        datetime | None,
        typer.Option(
            help="The first event time (ISO 8601, e.g. 2026-09-30T17:00:00Z); "
            "default: --days before now (historic) or now (live).",
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"],
        ),
    ] = None,
    wire: Annotated[WireChoice, typer.Option("--format", help="Wire format.")] = WireChoice.avro,
    out: Annotated[Path | None, typer.Option(help="Write JSON lines here instead.")] = None,
) -> None:
    """Produce realistic events: live at a rate, as fast as possible up to a count, or to a file."""
    import asyncio

    from streams.tools.simulate.runner import simulate as run_simulation

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
                scenarios=tuple(s.value for s in scenario or ()),
                wire=wire.value,
                span_ms=round(days * 86_400_000),
                out=out,
                start_ms=None if start is None else _epoch_ms(start),
                duration_s=duration,
            )
        )
    except ValueError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(EXIT_INVALID_CONFIG) from None
    except KeyboardInterrupt:
        return
    typer.echo(f"produced {produced} events", err=True)


def _epoch_ms(moment: datetime) -> int:
    """A naive time is UTC: event times are UTC epoch milliseconds throughout."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


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


@programme_app.command("report")
def programme_report(
    programme: Annotated[str, typer.Argument(help="Programme id in the catalog.")],
    indicator: Annotated[str, typer.Argument(help="The programme's indicator id.")],
    value: Annotated[float, typer.Argument(help="The indicator's value measured now.")],
    unit: Annotated[str, typer.Option("--unit", help="The unit it was measured in.")],
) -> None:
    """Report an indicator's value (a programme_update event, checked against the catalog)."""
    import asyncio

    from aiokafka import AIOKafkaProducer

    from streams.kafka_security import client_kwargs
    from streams.programme_client import programme_update, send_update
    from streams.topics import Topics

    settings = _settings()
    plan = ScoringPlan(_load(settings.catalog))
    try:
        event = programme_update(
            plan.programmes, unit=unit, programme=programme, indicator=indicator, value=value
        )
    except InvalidEvent as error:
        typer.echo(f"refused: {error}", err=True)
        raise typer.Exit(EXIT_INVALID_CONFIG) from None

    async def send() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=_bootstrap(settings), **client_kwargs(settings)
        )
        await producer.start()
        try:
            await send_update(producer, Topics(settings), event)
        finally:
            await producer.stop()

    asyncio.run(send())
    typer.echo(f"reported {programme}/{indicator} = {value:g} for {unit} ({event['event_id']})")


class PeriodChoice(StrEnum):
    month = "month"
    quarter = "quarter"
    year = "year"


@app.command()
def report(
    window: Annotated[PeriodChoice, typer.Option("--window", help="The period's kind.")],
    period: Annotated[
        str, typer.Option("--period", help="2026-11 (month), 2026-Q4 (quarter) or 2026 (year).")
    ],
    out: Annotated[Path, typer.Option("--out", help="The HTML file to write.")],
    events: Annotated[
        Path | None, typer.Option("--events", help="Events file (JSON lines) to score.")
    ] = None,
    from_topics: Annotated[
        bool, typer.Option("--from-topics", help="Read the output topics instead.")
    ] = False,
    catalog: CatalogOption = None,
    pdf: Annotated[bool, typer.Option("--pdf", help="Also print it to PDF (Chromium).")] = False,
) -> None:
    """A period report (standings, heat map, worst touchpoints, programmes, trend) as one
    self-contained HTML file."""
    from streams.tools.report import PeriodError, build, write_pdf

    if (events is None) == (not from_topics):
        typer.echo("give one of --events FILE or --from-topics", err=True)
        raise typer.Exit(EXIT_INVALID_CONFIG)
    settings = _settings()
    plan = ScoringPlan(_load(catalog or settings.catalog))
    records = _report_records(settings, plan, events, window.value)
    try:
        html = build(plan, records, window.value, period)
    except PeriodError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(EXIT_INVALID_CONFIG) from None
    out.write_text(html, encoding="utf-8")
    typer.echo(f"wrote {out}", err=True)
    if pdf:
        try:
            write_pdf(out, out.with_suffix(".pdf"))
        except PeriodError as error:
            typer.echo(str(error), err=True)
            raise typer.Exit(1) from None
        typer.echo(f"wrote {out.with_suffix('.pdf')}", err=True)


def _report_records(
    settings: Settings, plan: ScoringPlan, events: Path | None, kind: str
) -> list[dict[str, Any]]:
    """The records a report reads: `cemi score`'s of an events file, or the output topics'."""
    if events is not None:
        from streams.batch import Replay

        replay = Replay(plan)
        try:
            with events.open("rb") as source:
                replay.add_lines(source)
        except OSError as error:
            typer.echo(f"--events: cannot read {events}: {error.strerror}", err=True)
            raise typer.Exit(EXIT_INVALID_CONFIG) from None
        return replay.records(kind, complete=True)  # type: ignore[arg-type]
    import asyncio

    from streams.kafka_security import client_kwargs
    from streams.tools.tail import latest_by_key
    from streams.topics import Topics
    from streams.wire.outputs import reader_codec

    topics = Topics(settings)
    bootstrap = _bootstrap(settings)

    async def read() -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for name in ("scores", "kpi", "standings", "programmes"):
            latest = await latest_by_key(
                bootstrap,
                topics.output(name),
                idle_exit_s=3,
                security=client_kwargs(settings),
                codec=reader_codec(settings.schema_registry_url),
            )
            records.extend(latest.values())
        return records

    return asyncio.run(read())


@app.command()
def demo(
    rate: Annotated[float, typer.Option(help="Simulated events per second.")] = 300.0,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
) -> None:
    """Broker + worker + simulator with an install backlog in HPG, shown live (Ctrl-C stops)."""
    from streams.tools.demo import run_demo

    run_demo(_settings(), rate=rate, duration_s=duration)


def main() -> None:
    app()
