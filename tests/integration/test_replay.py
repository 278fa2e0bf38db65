"""History replayed as a user does it, read back with the tools users already have.

- `cemi simulate --days 21 --out` then `cemi produce`: every record stamped with its event
  time, so a full-speed replay of weeks gives the month and day records of `cemi score` on
  the same file, with no late event (at the default allowed lateness).
- confluent-kafka's consumer + fastavro read the Avro score records (single-object: the
  10-byte header `C3 01` + CRC-64-AVRO fingerprint, then the body).
- Debian's `kcat -C -e -J` reads the JSON score records (`CEMI_OUTPUT_FORMAT=json`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint, to_parsing_canonical_form

from streams.core.windows import CALENDAR_KINDS
from tests.integration.conftest import CEMI, Stream
from tests.integration.test_stream import (
    batch_standings,
    send,
    settled_scores,
    settled_standings,
    window_key,
)

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Any:
    return subprocess.run(
        [CEMI, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def batch_of(events: Path) -> dict[tuple[Any, ...], dict[str, Any]]:
    """`cemi score` of the file, every window kind, by record key and window."""
    records: dict[tuple[Any, ...], dict[str, Any]] = {}
    for window in CALENDAR_KINDS:
        scored = cli("score", "--events", str(events), "--window", window)
        assert scored.returncode == 0, scored.stderr
        for line in scored.stdout.splitlines():
            record = json.loads(line)
            # standings are compared apart (batch_standings), programmes in test_programmes
            if record["level"] not in ("standings", "programme"):
                records[window_key(record)] = record
    return records


def load(events: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in events.read_bytes().splitlines() if line.strip()]


def wait_folded(stream: Stream, sent: int) -> dict[str, int]:
    stream.wait_for(
        lambda: sum(stream.totals()[k] for k in ("scored", "duplicates", "late")) == sent,
        timeout=240,
        what="every event folded",
    )
    return stream.totals()


def unit_scores(records: dict[Any, dict[str, Any]]) -> dict[tuple[str, str, str], float]:
    return {
        (r["unit"], r["window"], r["window_start"]): r["score"]
        for r in records.values()
        if r["level"] == "unit"
    }


@pytest.fixture(scope="module")
def replayed(broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("replay")
    events = tmp / "history.jsonl"
    made = cli("simulate", "--count", "100000", "--days", "21", "--out", str(events))
    assert made.returncode == 0, made.stderr
    stream = Stream(broker, tmp)
    stream.worker()
    produced = cli("produce", "--events", str(events), env=stream.env)
    assert produced.returncode == 0, produced.stderr
    sent = sum(1 for line in events.read_bytes().splitlines() if line.strip())
    assert f"sent {sent} events, rejected 0 lines" in produced.stderr
    totals = wait_folded(stream, sent)
    yield stream, events, totals
    stream.close()


def test_weeks_of_history_replayed_with_cemi_produce_equal_cemi_score_with_none_late(
    replayed: Any,
) -> None:
    stream, events, totals = replayed
    assert totals["late"] == 0
    batch = batch_of(events)
    starts = {r["window_start"][:10] for r in batch.values() if r["window"] == "month"}
    assert len(starts) >= 2  # the three weeks cross a month boundary
    topics = [stream.settings.topic("cemi.scores"), stream.settings.topic("cemi.kpi")]
    compared, _ = settled_scores(stream.bootstrap, topics, batch, timeout_s=120)
    assert compared == len(batch) > 10_000
    standings = stream.settings.topic("cemi.standings")
    assert settled_standings(stream.bootstrap, standings, batch_standings(load(events))) > 0


def test_confluent_kafka_and_fastavro_read_the_avro_scores(replayed: Any) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    stream, events, _ = replayed
    expected = unit_scores(batch_of(events))
    schema = json.loads((ROOT / "schemas" / "out" / "cemi_score.avsc").read_text())
    # the documented single-object header: C3 01 + CRC-64-AVRO of the canonical form
    header = b"\xc3\x01" + bytes.fromhex(
        fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    )
    parsed = parse_schema(schema)
    topic = stream.settings.topic("cemi.scores")
    deadline = time.monotonic() + 120
    while True:
        consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": stream.bootstrap,
                "group.id": "confluent-reader",
                "enable.auto.commit": False,
            }
        )
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign(
            [
                confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                for p in partitions
            ]
        )
        latest: dict[bytes, dict[str, Any]] = {}
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 3:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            idle_since = time.monotonic()
            value = message.value()
            if value is None:
                latest.pop(message.key(), None)
                continue
            assert value[:10] == header
            latest[message.key()] = schemaless_reader(BytesIO(value[10:]), parsed, None)
        consumer.close()
        got = unit_scores(dict(enumerate(latest.values())))
        if got.keys() == expected.keys() and all(
            got[k] == pytest.approx(v, abs=1e-9) for k, v in expected.items() if v is not None
        ):
            return
        assert time.monotonic() < deadline, "confluent-kafka never read the batch's unit scores"
        time.sleep(2)


def kcat_for(kcat: str, bootstrap: str) -> tuple[list[str], dict[str, str]]:
    """Debian's kcat, and the environment it runs in against the embedded broker.

    Debian 12's librdkafka (2.0.2) cannot parse the embedded broker's ApiVersions v3 reply
    ("Read underflow", then "Broker transport failure"); with a real Kafka it works as is.
    Where that happens, kcat runs with the newer librdkafka of the confluent-kafka wheel
    preloaded (same soname, same ABI): the README documents the same for users."""
    probe = [kcat, "-L", "-b", bootstrap, "-m", "5"]
    plain = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
    if plain.returncode == 0:
        return [kcat], dict(os.environ)
    assert "Read underflow" in plain.stderr, plain.stderr
    confluent_kafka = pytest.importorskip("confluent_kafka")
    libs = Path(confluent_kafka.__file__).parent.with_name("confluent_kafka.libs")
    env = {**os.environ, "LD_PRELOAD": str(next(libs.glob("librdkafka*.so*")))}
    preloaded = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30)
    assert preloaded.returncode == 0, preloaded.stderr
    return [kcat], env


def test_kcat_reads_the_json_scores_equal_to_cemi_score(broker: Any, tmp_path: Path) -> None:
    kcat = shutil.which("kcat")
    if kcat is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kcat is not installed (scripts/setup.sh installs it in CI)")
        pytest.skip("kcat is not installed (apt-get install kcat)")
    events = tmp_path / "events.jsonl"
    made = cli("simulate", "--count", "20000", "--days", "3", "--out", str(events))
    assert made.returncode == 0, made.stderr
    command, env = kcat_for(kcat, broker.url)
    stream = Stream(broker, tmp_path, output_format="json")
    try:
        stream.worker()
        payload = [orjson.loads(line) for line in events.read_bytes().splitlines()]
        wait_folded(stream, send(stream, payload, "json"))
        expected = unit_scores(batch_of(events))
        topic = stream.settings.topic("cemi.scores")
        deadline = time.monotonic() + 120
        while True:
            read = subprocess.run(
                [*command, "-C", "-b", stream.bootstrap, "-t", topic, "-e", "-J", "-q"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert read.returncode == 0, read.stderr
            latest: dict[str, dict[str, Any]] = {}
            for line in read.stdout.splitlines():
                message = json.loads(line)
                if message["payload"] is None:
                    latest.pop(message["key"], None)
                else:
                    latest[message["key"]] = json.loads(message["payload"])
            got = unit_scores(dict(enumerate(latest.values())))
            if got.keys() == expected.keys() and all(
                got[k] == pytest.approx(v, abs=1e-9) for k, v in expected.items() if v is not None
            ):
                break
            assert time.monotonic() < deadline, "kcat never read the batch's unit scores"
            time.sleep(2)
        # the JSON records carry exactly the Avro schema's field names
        schema = json.loads((ROOT / "schemas" / "out" / "cemi_score.avsc").read_text())
        names = [f["name"] for f in schema["fields"]]
        assert all(list(record) == names for record in latest.values())
    finally:
        stream.close()
