"""The messages of everything the scorer publishes: which topic, key, partition and record
timestamp, and the bytes (in the format `streams.wire.outputs.OutputCodec` writes).

Score and KPI records carry an event time as the record timestamp (`LocalCalendar.stamp`:
a day or month window's start, a quarter or year's newest month): the topics' time retention
then counts in windows, not in publication times, and a reader can seek to the newest
windows by timestamp (`offsets_for_times`) instead of reading history.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson

from streams.contract.messages import TICK, Message
from streams.core.programmes import programme_key
from streams.core.standings import standings_key
from streams.scoring.network import encode_summary, progress_key, summary_key
from streams.scoring.publish import record_topic_key
from streams.topics import Topics
from streams.wire.outputs import OutputCodec
from streams.wire.registry import SchemaRegistry


class OutputMessages:
    def __init__(self, topics: Topics, codec: OutputCodec) -> None:
        self.topics = topics
        self.codec = codec
        self._load_encoders()
        self.kpi_topic = topics.output("kpi")
        self.scores_topic = topics.output("scores")
        self.late_topic = topics.output("late")
        self.alerts_topic = topics.output("alerts")
        self.deadletter_topic = topics.output("deadletter")
        self.standings_topic = topics.output("standings")
        self.programmes_topic = topics.output("programmes")

    def _load_encoders(self) -> None:
        encoder = self.codec.encoder
        self.encode_kpi = encoder("KpiWindow")
        self.encode_score = encoder("CemiScore")
        self.encode_late = encoder("LateEvent")
        self.encode_alert = encoder("Alert")
        self.encode_dead_letter = encoder("DeadLetter")
        self.encode_standings = encoder("Standings")
        self.encode_programme = encoder("ProgrammeStatus")

    def use_registry(self, registry: SchemaRegistry) -> None:
        """Confluent-framed Avro from now on (see `OutputCodec.use_registry`)."""
        names = ("kpi", "scores", "late", "alerts", "deadletter", "standings", "programmes")
        topics = {name: self.topics.output(name) for name in names}
        self.codec.use_registry(registry, topics)
        self._load_encoders()

    def score_message(self, record: dict[str, Any], stamp_ms: int | None = None) -> Message:
        """A score or KPI record, its timestamp `stamp_ms` (`LocalCalendar.stamp`; default:
        its window's start)."""
        key = record_topic_key(record)
        start = record["window_start_ms"] if stamp_ms is None else stamp_ms
        if record["level"] == "kpi":
            return self.kpi_topic, self.encode_kpi(record), key, None, start
        return self.scores_topic, self.encode_score(record), key, None, start

    def standings_message(self, record: dict[str, Any], stamp_ms: int) -> Message:
        """A standings record, keyed by window, window start, service and touchpoint."""
        key = standings_key(record).encode()
        return self.standings_topic, self.encode_standings(record), key, None, stamp_ms

    def programme_message(self, record: dict[str, Any], stamp_ms: int) -> Message:
        """A programme record, keyed programme/unit/indicator/window/window_start."""
        key = programme_key(record).encode()
        return self.programmes_topic, self.encode_programme(record), key, None, stamp_ms

    def tombstones(self, keys: Iterable[tuple[str, bytes]]) -> list[Message]:
        """Deletions of published records, by (level, key): what compaction then drops."""
        return [
            (self.kpi_topic if level == "kpi" else self.scores_topic, None, key, None, None)
            for level, key in keys
        ]

    def outbox_message(self, kind: str, record: dict[str, Any]) -> Message:
        """An outbox entry's message (`streams.scoring.outbox`): alert, late or dead."""
        if kind == "alert":
            return self.alert_message(record)
        key = f"{record['source_topic']}#{record['source_partition']}#{record['source_offset']}"
        if kind == "late":
            value = self.encode_late(record)
            return self.late_topic, value, key.encode(), None, record["event_time"]
        original = orjson.dumps(record["original"])
        value = self.encode_dead_letter({**record, "original": original})
        return self.deadletter_topic, value, key.encode(), None, None

    def alert_message(self, alert: dict[str, Any]) -> Message:
        value = self.encode_alert({**alert, "published_at_ms": int(time.time() * 1000)})
        return self.alerts_topic, value, alert["alert_id"].encode(), None, None

    def network_view_message(self, view: dict[str, Any]) -> Message:
        key = f"{view['window']}|{view['start']}".encode()
        return self.topics.network_means, orjson.dumps(view), key, 0, None

    def summary_message(self, summary: dict[str, Any]) -> Message:
        key = summary_key(summary["window"], summary["start"], summary["unit"]).encode()
        return self.topics.unit_scores, encode_summary(summary), key, 0, None

    def progress_message(self, watermarks_ms: dict[int, int]) -> Message:
        value = encode_summary({"progress": {str(p): w for p, w in watermarks_ms.items()}})
        return self.topics.unit_scores, value, progress_key(watermarks_ms).encode(), 0, None

    def tick_message(self, partition: int) -> Message:
        return self.topics.envelopes, TICK, None, partition, None
