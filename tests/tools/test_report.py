"""`cemi report`: the period report of a generated month, opened in Debian's Chromium; its
numbers, read back from the page, equal `cemi score`'s for that month."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streams.core.windows import LocalCalendar
from streams.tools.report import PeriodError, period_start

CEMI = str(Path(sys.executable).with_name("cemi"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def cemi(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CEMI, *args], capture_output=True, text=True, timeout=300, check=False)


def test_periods_are_named_by_kind_on_the_local_calendar() -> None:
    calendar = LocalCalendar("Asia/Ho_Chi_Minh")
    assert calendar.isoformat(period_start(calendar, "month", "2026-11")) == (
        "2026-11-01T00:00:00+07:00"
    )
    assert calendar.isoformat(period_start(calendar, "quarter", "2026-Q4")) == (
        "2026-10-01T00:00:00+07:00"
    )
    assert calendar.isoformat(period_start(calendar, "year", "2027")) == (
        "2027-01-01T00:00:00+07:00"
    )
    with pytest.raises(PeriodError, match="YYYY-Qn"):
        period_start(calendar, "quarter", "2026-11")


def test_the_report_of_a_month_shows_what_cemi_score_computes(tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (scripts/setup.sh installs it in CI)")
        pytest.skip("Debian's chromium is not installed")
    events = tmp_path / "events.jsonl"
    made = cemi(
        "simulate", "--count", "30000", "--days", "62", "--units", "HPG,QBH,HNI,HCM",
        "--scenario", "install_backlog", "--start", "2026-09-30T17:00:00Z", "--out", str(events),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    report = tmp_path / "report.html"
    written = cemi(
        "report", "--events", str(events), "--window", "month", "--period", "2026-11",
        "--out", str(report), "--pdf",
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    assert report.with_suffix(".pdf").read_bytes().startswith(b"%PDF")
    scored = cemi("score", "--events", str(events), "--window", "month")
    assert scored.returncode == 0, scored.stderr
    month = "2026-11-01T00:00:00+07:00"
    records = [json.loads(line) for line in scored.stdout.splitlines()]
    records = [r for r in records if r["window_start"] == month]
    units = {r["unit"]: r["score"] for r in records if r["level"] == "unit"}
    services = {(r["unit"], r["service"]): r["score"] for r in records if r["level"] == "service"}
    (ranking,) = [
        r for r in records if r["level"] == "standings" and r["service"] is None
        and r["touchpoint"] is None
    ]  # fmt: skip
    programmes = {
        (r["unit"], r["indicator"]): r["attainment"] for r in records if r["level"] == "programme"
    }
    assert programmes  # the install backlog's recovery programme reported
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = chromium.new_page(viewport={"width": 1200, "height": 900})
        page.goto(report.resolve().as_uri())
        shown = read(page)
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        chromium.close()
    assert shown["standings"] == [[e["unit"], e["rank"], e["score"]] for e in ranking["units"]]
    assert shown["units"] == units
    assert {(u, s): score for u, s, score in shown["services"]} == services
    assert {(u, i): a for u, i, a in shown["programmes"]} == programmes
    if os.environ.get("CEMI_SCREENSHOTS"):
        target = Path(os.environ["CEMI_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "report.png", target / "report.png")


def read(page: Any) -> dict[str, Any]:
    """The report's numbers, at full precision, from its data attributes."""
    return page.evaluate(
        """() => {
        const num = (v) => (v === '' || v === 'None' ? null : Number(v));
        const standings = [...document.querySelectorAll('#standings tr[data-unit]')].map(
            (r) => [r.dataset.unit, Number(r.dataset.rank), num(r.dataset.score)]);
        const units = {}; const services = [];
        for (const row of document.querySelectorAll('#heatmap tr[data-unit]')) {
            for (const cell of row.querySelectorAll('td[data-service]')) {
                if (cell.dataset.service === '') units[row.dataset.unit] = num(cell.dataset.score);
                else services.push(
                    [row.dataset.unit, cell.dataset.service, num(cell.dataset.score)]);
            }
        }
        const programmes = [...document.querySelectorAll('#programmes tr[data-indicator]')].map(
            (r) => [r.children[1].textContent, r.dataset.indicator,
                    num(r.querySelector('[data-attainment]').dataset.attainment)]);
        return {standings, units, services, programmes};
    }"""
    )


def test_script_like_catalog_names_are_text_in_the_report(tmp_path: Path) -> None:
    """Touchpoint names and owners come from the operator's catalog: the report escapes them
    and keeps no script of its own (the charts' too are stripped)."""
    import orjson

    from streams.batch import Replay
    from streams.core.catalog import load_catalog
    from streams.core.plan import ScoringPlan
    from streams.tools.report import build
    from streams.tools.simulate.generator import DAY_MS, Generator, Incident
    from tests.factories import local_ms
    from tests.integration.test_console import HOSTILE, HOSTILE_OWNER, hostile_catalog

    plan = ScoringPlan(load_catalog(hostile_catalog(tmp_path / "catalog.yaml")))
    start = local_ms("2026-11-01 00:00")
    incident = Incident("install_backlog", "HPG", start, start + 20 * DAY_MS)
    generator = Generator(
        units=("HPG", "QBH"), start_ms=start, span_ms=28 * DAY_MS, seed=5, incidents=(incident,)
    )
    replay = Replay(plan)
    replay.add_lines(orjson.dumps(e) for e in generator.events(6000))
    html = build(plan, replay.records("month", complete=True), "month", "2026-11")
    assert "<script" not in html.lower()
    assert HOSTILE not in html and HOSTILE_OWNER not in html
    # the install touchpoint (HPG's worst) with its name and owner, as text
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in html
    assert "owner: &lt;script&gt;window.pwned = 3&lt;/script&gt;field team" in html
