"""The `cemi` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from streams.core.catalog import Catalog, CatalogError, load_catalog
from streams.core.events import InvalidEvent
from streams.core.plan import ScoringPlan

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

    if window not in ("month", "day"):
        typer.echo(f"--window: must be month or day, got {window!r}", err=True)
        raise typer.Exit(EXIT_INVALID_CONFIG)
    replay = Replay(ScoringPlan(_load(catalog)))

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


def main() -> None:
    app()
