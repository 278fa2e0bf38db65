"""The Alertmanager example: valid for amtool, routes by unit and service, and a firing
service alert inhibits its touchpoint alerts in a real Alertmanager (Debian's binary)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from streams.broker import free_port
from tests.deploy.promql import DEPLOY
from tests.deploy.tools import Server, require, run

CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"


def test_amtool_check_config_accepts_the_example() -> None:
    checked = run(require("amtool"), "check-config", str(CONFIG))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "2 inhibit rules" in checked.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (
            ["component=experience", "unit=HPG", "service=mobile"],
            "cemi-north-desk,cemi-mobile-team",
        ),
        (["component=experience", "unit=HCM", "service=mytv"], "cemi-south-desk,cemi-fixed-team"),
        (["component=experience", "unit=QBH", "service=digital_enterprise"], "cemi-digital-team"),
        (["component=experience", "unit=QBH", "service=other"], "cemi-experience"),
        # by owner first (the catalog's), the service team when the alert has none
        (
            ["component=experience", "unit=HPG", "service=mobile", "owner=Technical centre"],
            "cemi-north-desk,cemi-technical-centre",
        ),
        (
            ["component=experience", "unit=QBH", "service=mytv", "owner=Billing centre"],
            "cemi-billing-centre",
        ),
        (
            ["component=experience", "unit=QBH", "service=mytv", "owner=Customer care centre"],
            "cemi-care-centre",
        ),
        (
            ["component=experience", "unit=QBH", "service=mobile", "owner=Mobile CX"],
            "cemi-mobile-team",
        ),
        (["component=pipeline", "alertname=CemiPipelineStalled"], "cemi-platform"),
        (["alertname=Watchdog"], "cemi-default"),
    ],
)
def test_alerts_route_by_owner_unit_and_service(labels: list[str], receivers: str) -> None:
    checked = run(
        require("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"--verify.receivers={receivers}",
        *labels,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_service_alert_inhibits_the_touchpoint_alerts_of_its_unit_and_service(
    tmp_path: Path,
) -> None:
    # the webhooks point at a closed loopback port here: nothing leaves the machine
    sink = f"http://127.0.0.1:{free_port()}/"
    config = re.sub(r"http://alert-bridge:5001/\w+", sink, CONFIG.read_text())
    (tmp_path / "alertmanager.yml").write_text(config)
    server = Server.alertmanager(tmp_path / "alertmanager.yml", tmp_path / "data")
    try:
        server.wait_ready()
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))

        def alert(name: str, **labels: str) -> dict[str, object]:
            return {"labels": {"alertname": name, **labels}, "startsAt": start}

        server.post(
            "/api/v2/alerts",
            [
                alert("CemiServiceDegraded", component="experience", unit="HPG", service="mobile"),
                alert(
                    "CemiTouchpointDegraded",
                    component="experience",
                    unit="HPG",
                    service="mobile",
                    touchpoint="install",
                ),
                # same touchpoint, another unit / another service: not inhibited
                alert(
                    "CemiTouchpointDegraded",
                    component="experience",
                    unit="QBH",
                    service="mobile",
                    touchpoint="install",
                ),
                alert(
                    "CemiTouchpointDegraded",
                    component="experience",
                    unit="HPG",
                    service="mytv",
                    touchpoint="install",
                ),
            ],
        )
        deadline = time.monotonic() + 20
        states: dict[tuple[str, str, str], str] = {}
        while time.monotonic() < deadline:
            states = {
                (a["labels"]["alertname"], a["labels"]["unit"], a["labels"]["service"]): a[
                    "status"
                ]["state"]
                for a in server.get("/api/v2/alerts")
            }
            if states.get(("CemiTouchpointDegraded", "HPG", "mobile")) == "suppressed":
                break
            time.sleep(0.3)
        assert states == {
            ("CemiServiceDegraded", "HPG", "mobile"): "active",
            ("CemiTouchpointDegraded", "HPG", "mobile"): "suppressed",
            ("CemiTouchpointDegraded", "QBH", "mobile"): "active",
            ("CemiTouchpointDegraded", "HPG", "mytv"): "active",
        }
    finally:
        server.stop()
