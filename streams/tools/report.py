"""`cemi report`: one self-contained HTML file (and a PDF where Chromium is present) for a
period a manager reads: the standings with rank change and class, the heat map of units by
service, each unit's worst touchpoints with their KPIs, the action programmes' progress, and
the trend of the unit and network scores over the periods before.

The records come from `cemi score`'s replay of an events file or from the output topics; the
page is rendered by Jinja2 with autoescaping (unit codes and catalog names come from users),
its charts are inline SVG drawn by pygal (no script kept, nothing loaded from elsewhere), so
the file can be mailed. Numbers are also in `data-*` attributes at full precision, which is
how the tests read them back.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

import pygal
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from streams.core.plan import ScoringPlan
from streams.core.records import Record
from streams.core.windows import LocalCalendar, WindowKind

TREND_PERIODS: Final = 6  # the period and up to 5 before it
WORST_TOUCHPOINTS: Final = 3
_SCRIPT: Final = re.compile(r"<script\b.*?</script>", re.DOTALL)
_PERIOD: Final = {
    "month": re.compile(r"^(\d{4})-(\d{2})$"),
    "quarter": re.compile(r"^(\d{4})-Q([1-4])$"),
    "year": re.compile(r"^(\d{4})$"),
}
CHROMIUM_ARGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


class PeriodError(ValueError):
    pass


def period_start(calendar: LocalCalendar, kind: WindowKind, period: str) -> int:
    """The start (epoch ms) of the window `period` names: `2026-11` (month), `2026-Q4`
    (quarter) or `2026` (year), on the catalog's local calendar."""
    found = _PERIOD[kind].match(period)
    if found is None:
        shapes = {"month": "YYYY-MM", "quarter": "YYYY-Qn", "year": "YYYY"}
        raise PeriodError(f"--period: {period!r} is not a {kind} ({shapes[kind]})")
    year = int(found.group(1))
    month = 1
    if kind == "month":
        month = int(found.group(2))
        if not 1 <= month <= 12:
            raise PeriodError(f"--period: no month {month}")
    elif kind == "quarter":
        month = 3 * (int(found.group(2)) - 1) + 1
    return calendar.window_start(kind, calendar.date_start(date(year, month, 1)))


@dataclass
class Period:
    """The records of one window of the report's kind."""

    start_ms: int
    window_start: str
    scores: list[Record] = field(default_factory=list)  # unit, service, touchpoint, KPI, network
    standings: list[Record] = field(default_factory=list)
    programmes: list[Record] = field(default_factory=list)


def group(records: Iterable[Record], calendar: LocalCalendar, kind: str) -> dict[int, Period]:
    """Records of `kind` windows by window start (records of other kinds are left out)."""
    periods: dict[int, Period] = {}
    for record in records:
        if record.get("window") != kind:
            continue
        start = record.get("window_start_ms")
        if start is None:
            start = calendar.window_start(kind, _parse_iso_ms(record["window_start"]))  # type: ignore[arg-type]
        period = periods.setdefault(start, Period(start, record["window_start"]))
        level = record["level"]
        if level == "standings":
            period.standings.append(record)
        elif level == "programme":
            period.programmes.append(record)
        else:
            period.scores.append(record)
    return periods


def _parse_iso_ms(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text).timestamp() * 1000)


def build(plan: ScoringPlan, records: Iterable[Record], kind: WindowKind, period: str) -> str:
    """The report's HTML."""
    calendar = LocalCalendar(plan.catalog.timezone)
    start = period_start(calendar, kind, period)
    periods = group(records, calendar, kind)
    current = periods.get(start)
    if current is None:
        raise PeriodError(f"--period: no {kind} {period} in the records")
    previous_starts = [start]
    while len(previous_starts) < TREND_PERIODS:
        previous_starts.append(calendar.previous_start(kind, previous_starts[-1]))
    history = [periods[s] for s in reversed(previous_starts) if s in periods]
    services = [svc.service for svc in plan.services]
    units = [r for r in current.scores if r["level"] == "unit"]
    cells = {(r["unit"], r["service"]): r for r in current.scores if r["level"] == "service"}
    ranking = next(
        (s for s in current.standings if s["service"] is None and s["touchpoint"] is None), None
    )
    network = next((r for r in current.scores if r["level"] == "network"), None)
    template = _environment().get_template("report.html")
    return template.render(
        title=f"CEMI {kind} report {period}",
        kind=kind,
        period=period,
        window_start=current.window_start,
        catalog_version=plan.version,
        network=network,
        ranking=ranking["units"] if ranking else [],
        services=services,
        units=sorted(units, key=lambda r: r["unit"]),
        cells=cells,
        worst=_worst(plan, current.scores),
        programmes=sorted(
            current.programmes, key=lambda r: (r["programme"], r["unit"], r["indicator"])
        ),
        trend=Markup(_trend_svg(history, kind)),  # noqa: S704 - pygal's SVG, scripts removed
    )


def _worst(plan: ScoringPlan, scores: list[Record]) -> list[dict[str, Any]]:
    """Per unit, its lowest-scoring touchpoints with their KPIs, name and owner."""
    defs = {(tp.service, tp.touchpoint): tp for tp in plan.touchpoints}
    out = []
    for unit in sorted({r["unit"] for r in scores if r.get("unit")}):
        touchpoints = sorted(
            (
                r
                for r in scores
                if r["level"] == "touchpoint" and r["unit"] == unit and r["score"] is not None
            ),
            key=lambda r: r["score"],
        )[:WORST_TOUCHPOINTS]
        out.append(
            {
                "unit": unit,
                "touchpoints": [
                    {
                        **tp,
                        "name": defs[(tp["service"], tp["touchpoint"])].name,
                        "owner": defs[(tp["service"], tp["touchpoint"])].owner,
                        "kpis": [
                            r
                            for r in scores
                            if r["level"] == "kpi"
                            and r["unit"] == unit
                            and r["service"] == tp["service"]
                            and r["touchpoint"] == tp["touchpoint"]
                        ],
                    }
                    for tp in touchpoints
                ],
            }
        )
    return out


def _trend_svg(history: list[Period], kind: str) -> str:
    """The unit and network scores over the periods, as inline SVG without scripts."""
    chart = pygal.Line(
        js=[],
        disable_xml_declaration=True,
        width=900,
        height=360,
        range=(1, 5),
        show_dots=True,
        legend_at_bottom=True,
        title=f"CEMI per {kind}",
    )
    chart.x_labels = [p.window_start[: 7 if kind == "month" else 10] for p in history]
    units = sorted({r["unit"] for p in history for r in p.scores if r["level"] == "unit"})
    for unit in units:
        chart.add(unit, [_score(p, "unit", unit) for p in history])
    chart.add("network", [_score(p, "network", None) for p in history], stroke_style={"width": 4})
    return _SCRIPT.sub("", chart.render(is_unicode=True))


def _score(period: Period, level: str, unit: str | None) -> float | None:
    for record in period.scores:
        if record["level"] == level and record["unit"] == unit:
            score: float | None = record["score"]
            return score
    return None


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("streams.tools", "templates"),
        autoescape=select_autoescape(default=True),
    )
    environment.filters["num"] = lambda v, d=2: "–" if v is None else f"{v:.{d}f}"
    environment.filters["signed"] = lambda v: "–" if v is None else f"{v:+.2f}"
    environment.filters["full"] = lambda v: "" if v is None else repr(v)
    return environment


def write_pdf(html: Path, pdf: Path) -> None:
    """Print the report to PDF with Debian's headless Chromium."""
    chromium = shutil.which("chromium")
    if chromium is None:
        raise PeriodError("--pdf: chromium is not installed")
    subprocess.run(  # noqa: S603 - Debian's chromium on PATH, our flags, our two paths
        [
            chromium,
            *CHROMIUM_ARGS,
            f"--print-to-pdf={pdf}",
            "--no-pdf-header-footer",
            html.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
