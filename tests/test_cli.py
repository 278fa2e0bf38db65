"""End-to-end checks through the installed `cemi` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson

from tests.conftest import FIXTURES
from tests.test_batch import hand_example

# The console script installed beside this interpreter (the project venv).
CEMI = str(Path(sys.executable).with_name("cemi"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CEMI, *args], capture_output=True, text=True, timeout=120)


def test_catalog_check_prints_normalised_weights() -> None:
    result = run("catalog", "check", str(FIXTURES / "small_catalog.yaml"))
    assert result.returncode == 0, result.stderr
    assert "2 services, 3 touchpoints, 5 KPIs" in result.stdout
    assert "mobile                75.0%" in result.stdout
    assert "on_time 75.0%, delay 25.0%" in result.stdout


def test_catalog_check_exits_2_naming_the_bad_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = (FIXTURES / "small_catalog.yaml").read_text()
    bad.write_text(text.replace("scale: [[0.5, 1], [1.0, 5]]", "scale: [[1.0, 1], [0.5, 5]]"))
    result = run("catalog", "check", str(bad))
    assert result.returncode == 2
    assert "services.mobile.touchpoints.install.kpis.on_time.scale: values must increase" in (
        result.stderr
    )


def test_score_writes_json_lines_and_exits_1_when_lines_were_rejected(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in hand_example()) + b"\n{oops}\n")
    out = tmp_path / "scores.jsonl"
    result = run(
        "score",
        "--catalog",
        str(FIXTURES / "small_catalog.yaml"),
        "--events",
        str(events),
        "--window",
        "month",
        "--out",
        str(out),
    )
    assert result.returncode == 1
    assert f"{events}:16: rejected: malformed" in result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    unit = next(r for r in records if r["level"] == "unit" and r["unit"] == "HPG")
    assert abs(unit["score"] - 10.55 / 3) < 1e-9
    # a window's records: scores top-down, its network record, then its standings
    levels = [r["level"] for r in records]
    first_standing = levels.index("standings")
    assert levels[first_standing - 1] == "network"
    assert set(levels[first_standing:]) == {"standings"}
    ranking = records[first_standing]
    assert (ranking["service"], ranking["touchpoint"]) == (None, None)
    assert (
        ranking["units"][0]["unit"]
        == max(
            (r for r in records if r["level"] == "unit" and r["score"] is not None),
            key=lambda r: r["score"],
        )["unit"]
    )
    assert set(records[0]) >= {
        "level",
        "window",
        "window_start",
        "unit",
        "service",
        "touchpoint",
        "kpi",
        "score",
        "class",
        "coverage",
        "delta_prev",
        "delta_network",
        "target_ratio",
        "catalog_version",
    }


def test_score_uses_the_packaged_catalog_by_default_and_exits_0(tmp_path: Path) -> None:
    from streams.tools.simulate.generator import Generator

    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in Generator().events(2000)))
    result = run("score", "--events", str(events), "--window", "day")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["window_start"] for r in records} == {
        "2026-11-01T00:00:00+07:00",
        "2026-11-02T00:00:00+07:00",
    }
    assert {r["catalog_version"] for r in records} == {"2026.11"}


def test_score_refuses_an_unknown_window() -> None:
    result = run("score", "--events", "x.jsonl", "--window", "week")
    assert result.returncode == 2 and "--window" in result.stderr


def test_an_invalid_setting_refuses_to_start_naming_the_variable() -> None:
    import os

    env = {**os.environ, "CEMI_PARTITIONS": "0", "CEMI_ROLLING_SLICE_MS": "7000"}
    result = subprocess.run([CEMI, "worker"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert "CEMI_PARTITIONS: Input should be greater than or equal to 1" in result.stderr
    assert "CEMI_ROLLING_SLICE_MS: must divide CEMI_ROLLING_SPAN_MS" in result.stderr


def test_an_invalid_catalog_setting_refuses_to_start_naming_the_field(tmp_path: Path) -> None:
    import os

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (FIXTURES / "small_catalog.yaml").read_text().replace("weight: 3\n", "weight: -3\n", 1)
    )
    env = {**os.environ, "CEMI_CATALOG": str(bad)}
    result = subprocess.run([CEMI, "worker"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert "services.mobile.weight: Input should be greater than 0" in result.stderr


def test_broker_simulate_produce_and_tail_work_together(tmp_path: Path) -> None:
    """A user's session: a shared broker, events to a file, produced, dead letters tailed."""
    import os

    broker = subprocess.Popen(
        [CEMI, "broker"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert broker.stdout is not None
        url = broker.stdout.readline().strip()
        env = {**os.environ, "CEMI_BROKER_URL": url}
        events = tmp_path / "events.jsonl"
        made = subprocess.run(
            [CEMI, "simulate", "--count", "500", "--out", str(events)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        with events.open("a") as out:
            out.write('{"type": "order", "event_id": "x"}\n')
        sent = subprocess.run(
            [CEMI, "produce", "--events", str(events), "--format", "json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        # the bad last line is reported with its number, the others are sent: exit 1
        assert sent.returncode == 1, sent.stderr
        lines = events.read_text().count("\n")
        assert f"events.jsonl:{lines}: rejected: missing_field" in sent.stderr, sent.stderr
        assert f"sent {lines - 1} events, rejected 1 lines" in sent.stderr, sent.stderr
        # no worker runs, so nothing is dead-lettered yet: tail exits after 2 idle seconds
        tail = subprocess.run(
            [CEMI, "tail", "deadletter", "--from-beginning", "--json", "--idle-exit", "2"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert tail.returncode == 0 and tail.stdout == ""
    finally:
        broker.terminate()
        broker.wait(10)
