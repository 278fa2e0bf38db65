"""The product as a user installs it: the wheel built from this checkout, installed into a fresh
virtual environment outside it, run from a folder that is not the checkout.

A source checkout hides packaging defects (an editable install reads `schemas/` and the
catalog beside the source); the wheel must carry everything the commands read.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.broker import free_port

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]


class Installed:
    """A venv holding only the built wheel (and its dependencies from the index)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.bin = home / "venv" / "bin"
        self.work = home / "work"  # the user's folder: no checkout around it
        self.work.mkdir()
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("CEMI_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
        }
        self.env["PATH"] = f"{self.bin}{os.pathsep}{self.env.get('PATH', '')}"

    def run(self, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "cemi"), *args],
            cwd=self.work,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *args: str, log: str, **env: str) -> subprocess.Popen[bytes]:
        with (self.work / log).open("wb") as out:
            return subprocess.Popen(
                [str(self.bin / "cemi"), *args],
                cwd=self.work,
                env={**self.env, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    home = tmp_path_factory.mktemp("user")
    # build from a copy of the tracked sources, so nothing built lands in the checkout
    source = home / "source"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        path = ROOT / name.decode()
        target = source / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            target.symlink_to(os.readlink(path))
        elif path.is_file():
            shutil.copy2(path, target)
    dist = home / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(source)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    wheel = next(dist.glob("cemi_streams-*.whl"))
    user = Installed(home)
    venv.create(home / "venv", with_pip=True)
    subprocess.run(
        [str(user.bin / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=900,
    )
    yield user


def test_the_installed_wheel_reports_its_version(installed: Installed) -> None:
    done = installed.run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("cemi ") and "0." in done.stdout


def test_the_installed_wheel_simulates_and_scores_a_file(installed: Installed) -> None:
    made = installed.run("simulate", "--count", "3000", "--days", "2", "--out", "events.jsonl")
    assert made.returncode == 0, made.stderr
    events = [
        json.loads(line) for line in (installed.work / "events.jsonl").read_text().splitlines()
    ]
    # the simulator adds the units' subscriber-base snapshots to the touchpoint events
    assert sum(e["type"] != "subscriber_base" for e in events) == 3000
    scored = installed.run("score", "--events", "events.jsonl", "--window", "day")
    assert scored.returncode == 0, scored.stderr
    records = [json.loads(line) for line in scored.stdout.splitlines()]
    units = [r for r in records if r["level"] == "unit"]
    assert units and all(1 <= r["score"] <= 5 for r in units if r["score"] is not None)
    # the report's template is package data: it renders from the installed wheel
    month = units[-1]["window_start"][:7]
    report = installed.run(
        "report", "--events", "events.jsonl", "--window", "month", "--period", month,
        "--out", "report.html",
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    page = (installed.work / "report.html").read_text()
    assert "<svg" in page and units[-1]["unit"] in page and "<script" not in page


def test_an_installed_worker_scores_on_the_embedded_broker_and_cemi_tail_decodes_it(
    installed: Installed,
) -> None:
    broker = installed.start("broker", "--port", str(free_port()), log="broker.log")
    worker = None
    try:
        url = wait_for_line(installed.work / "broker.log", "127.0.0.1:", broker)
        env = {"CEMI_BROKER_URL": url, "CEMI_BROKER_WORKAROUNDS": "true"}
        web_port = free_port()
        worker = installed.start(
            "worker",
            "--loglevel",
            "info",
            log="worker.log",
            CEMI_WEB_PORT=str(web_port),
            CEMI_DATA_DIR=str(installed.work / "data"),
            CEMI_EMIT_INTERVAL_MS="300",
            **env,
        )
        made = installed.run("simulate", "--count", "2000", "--days", "1", "--out", "live.jsonl")
        assert made.returncode == 0, made.stderr
        produced = installed.run("produce", "--events", "live.jsonl", **env)
        assert produced.returncode == 0, produced.stderr
        sent = len((installed.work / "live.jsonl").read_text().splitlines())
        assert f"sent {sent} events, rejected 0 lines" in produced.stderr
        deadline = time.monotonic() + 180
        units: list[dict[str, Any]] = []
        while not units:
            assert worker.poll() is None, (installed.work / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (installed.work / "worker.log").read_text()[-3000:]
            tail = installed.run(
                "tail", "scores", "--from-beginning", "--json", "--idle-exit", "3", **env
            )
            assert tail.returncode == 0, tail.stderr
            records = [json.loads(line) for line in tail.stdout.splitlines()]
            units = [r for r in records if r.get("level") == "unit" and r.get("score")]
        assert all(1 <= r["score"] <= 5 for r in units)
        # the console's page and script are package data, served from the installed wheel
        for path, kind in (("/", "text/html"), ("/console/app.js", "text/javascript")):
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}{path}", timeout=10) as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith(kind)
                assert len(r.read()) > 500
    finally:
        for process in (worker, broker):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)


def wait_for_line(log: Path, needle: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if needle in line and not line.startswith("export"):
                return line.strip()
        assert process.poll() is None, log.read_text()
        time.sleep(0.2)
    raise AssertionError(f"no {needle!r} in {log}: {log.read_text()}")
