"""The ops console in a real browser (Debian's Chromium, driven by Playwright): a worker with
read auth on, a live simulator with an install backlog in HPG, and a catalog whose install
touchpoint has a hostile name and owner. Screenshots go to the test's folder;
`CEMI_SCREENSHOTS=DIR` (scripts/screenshots.sh) copies the console's to DIR too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.broker import EmbeddedBroker
from streams.tools.report import CHROMIUM_ARGS
from tests.integration.conftest import CEMI, Stream

pytestmark = pytest.mark.broker
TOKEN = "console-token-0123456789"
HOLD_MS = 45_000
HOSTILE = "<script>window.pwned = 1</script><img src=x onerror=window.pwned=2>"
HOSTILE_OWNER = "<script>window.pwned = 3</script>field team"  # owners: 64 characters at most
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# the report's Chromium flags; Playwright adds its own headless mode
ARGS = [arg for arg in CHROMIUM_ARGS if arg != "--headless"]


def api(worker: Any, path: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{worker.port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def browser() -> Any:
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (scripts/setup.sh installs it in CI)")
        pytest.skip("Debian's chromium is not installed")
    return playwright.sync_playwright()


def hostile_catalog(path: Path) -> Path:
    from importlib.resources import files

    data = yaml.safe_load(files("streams.data").joinpath("default_catalog.yaml").read_text())
    data.setdefault("alerts", {})["hold_ms"] = HOLD_MS  # the alert within a test's patience
    install = data["defaults"]["touchpoints"]["install"]
    install["name"] = HOSTILE
    install["owner"] = HOSTILE_OWNER
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


@pytest.fixture
def live(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[tuple[Stream, Any]]:
    catalog = hostile_catalog(tmp_path / "catalog.yaml")
    stream = Stream(
        broker,
        tmp_path,
        api_token=TOKEN,
        api_read_auth="true",
        catalog=str(catalog),
    )
    worker = stream.worker()
    stream.wait_for(lambda: worker.stats() is not None, timeout=120, what="the worker")
    simulator = subprocess.Popen(
        [CEMI, "simulate", "--rate", "300", "--duration", "300", "--scenario", "install_backlog"],
        env=stream.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield stream, worker
    finally:
        simulator.terminate()
        simulator.wait(30)
        stream.close()


def test_the_console_shows_units_alerts_and_acknowledges_in_chromium(
    live: tuple[Stream, Any], tmp_path: Path
) -> None:
    stream, worker = live
    started = time.monotonic()
    with browser() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("dialog", lambda dialog: dialog.dismiss())  # an alert() would be a script run
        page.goto(f"http://127.0.0.1:{worker.port}/")
        # read auth is on: the page asks for the token once
        page.wait_for_selector("#token-dialog[open]", timeout=30_000)
        page.fill("#token-input", TOKEN)
        page.click("#token-ok")

        # the heat map: every unit of the simulator, each with its class
        page.wait_for_selector("#heatmap-body tr", timeout=120_000)
        units = ("HPG", "QBH", "HNI", "HCM", "DNG", "CTO")

        def every_unit_classed() -> bool:
            rows = page.locator("#heatmap-body tr")
            shown = {rows.nth(i).get_attribute("data-unit") for i in range(rows.count())}
            classes = page.locator('#heatmap-body td.cell[data-service=""]')
            classed = [classes.nth(i).get_attribute("data-class") for i in range(classes.count())]
            return shown >= set(units) and all(classed)

        stream.wait_for(every_unit_classed, timeout=60, what="every unit with its class")

        # the incident (from +20 s) goes pending once enough installs went bad, fires after
        # the hold, and shows on the page within 30 s of firing (event time = wall clock)
        firing = 'li[data-state="firing"]:has-text("HPG / fixed_broadband / install")'
        page.wait_for_selector(firing, timeout=20_000 + HOLD_MS + 30_000 + 90_000)
        shown_ms = time.time() * 1000
        fired_after_s = time.monotonic() - started
        alert = next(
            a
            for a in api(worker, "/api/v1/alerts")["alerts"]
            if (a["unit"], a["service"], a["touchpoint"]) == ("HPG", "fixed_broadband", "install")
        )
        shown_after_firing_s = (shown_ms - alert["started_at_ms"]) / 1000
        # the alert fires `hold` after going pending; the console shows it within 30 s more
        assert shown_after_firing_s <= 30, shown_after_firing_s
        # the hostile owner and touchpoint name are text, and no script ran
        assert HOSTILE_OWNER in page.inner_text(firing)
        page.locator(
            '#heatmap-body td.cell[data-unit="HPG"][data-service="fixed_broadband"]'
        ).click()
        page.wait_for_selector('#tree details[data-touchpoint="install"]', timeout=10_000)
        assert HOSTILE in page.inner_text('#tree details[data-touchpoint="install"] summary')
        assert page.evaluate("window.pwned") is None
        page.screenshot(path=str(tmp_path / "console.png"), full_page=True)

        # Acknowledge changes its state
        page.locator(f"{firing} button").click()
        acknowledged = 'li[data-state="acknowledged"]:has-text("HPG / fixed_broadband / install")'
        page.wait_for_selector(acknowledged, timeout=60_000)
        assert "acknowledged by console" in page.inner_text(acknowledged)
        page.screenshot(path=str(tmp_path / "console-acknowledged.png"), full_page=True)
        assert not errors, errors
        chromium.close()
    print(
        f"\n[console] alert shown {fired_after_s:.0f} s after the simulator started, "
        f"{shown_after_firing_s:.1f} s after it fired"
    )
    if os.environ.get("CEMI_SCREENSHOTS"):
        target = Path(os.environ["CEMI_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "console.png", target / "console.png")
