"""Encoding of everything the scorer publishes (Avro single-object, or Confluent-framed with
a schema registry) and where it goes."""

from __future__ import annotations

import time
from typing import Any

import orjson

from streams.scoring.envelope import Entry
from streams.scoring.network import encode_summary, progress_key, summary_key
from streams.scoring.publish import record_topic_key
from streams.scoring.service import TICK, Message
from streams.topics import Topics
from streams.wire.codec import encode
from streams.wire.registry import SchemaRegistry, frame_outputs
from streams.wire.schemas import SchemaStore

# output topic -> the record its values carry
OUTPUT_RECORDS = {
    "kpi": "KpiWindow",
    "scores": "CemiScore",
    "late": "LateEvent",
    "alerts": "Alert",
    "deadletter": "DeadLetter",
}


class AvroOutputs:
    def __init__(self, topics: Topics, store: SchemaStore) -> None:
        self.topics = topics
        self.store = store
        self._load_schemas()
        self.kpi_topic = topics.output("kpi")
        self.scores_topic = topics.output("scores")
        self.late_topic = topics.output("late")
        self.alerts_topic = topics.output("alerts")

    def _load_schemas(self) -> None:
        store = self.store
        self.kpi_schema = store.current_record("KpiWindow")
        self.score_schema = store.current_record("CemiScore")
        self.late_schema = store.current_record("LateEvent")
        self.alert_schema = store.current_record("Alert")

    def use_registry(self, registry: SchemaRegistry) -> None:
        """Confluent-framed output from now on: registers every output schema under
        `<topic>-value` (blocking: call it at start-up, before anything is published)."""
        topics = {name: self.topics.output(name) for name in OUTPUT_RECORDS}
        frame_outputs(self.store, registry, {topics[n]: r for n, r in OUTPUT_RECORDS.items()})
        self._load_schemas()

    def score_message(self, record: dict[str, Any]) -> Message:
        if record["level"] == "kpi":
            return self.kpi_topic, encode(self.kpi_schema, record), record_topic_key(record), None
        return self.scores_topic, encode(self.score_schema, record), record_topic_key(record), None

    def late_message(self, entry: Entry, watermark_ms: int, lateness_ms: int) -> Message:
        topic, _, partition = entry.source.rpartition("#")
        value = encode(
            self.late_schema,
            {
                "event_id": entry.event_id,
                "event_type": entry.type,
                "unit": entry.unit,
                "service": entry.service,
                "event_time": entry.event_time,
                "watermark_ms": watermark_ms,
                "allowed_lateness_ms": lateness_ms,
                "source_topic": topic,
                "source_partition": int(partition),
                "source_offset": entry.offset,
            },
        )
        return (
            self.late_topic,
            value,
            entry.source.encode() + b"#" + str(entry.offset).encode(),
            None,
        )

    def alert_message(self, alert: dict[str, Any]) -> Message:
        value = encode(self.alert_schema, {**alert, "published_at_ms": int(time.time() * 1000)})
        return self.alerts_topic, value, alert["alert_id"].encode(), None

    def network_view_message(self, view: dict[str, Any]) -> Message:
        key = f"{view['window']}|{view['start']}".encode()
        return self.topics.network_means, orjson.dumps(view), key, 0

    def summary_message(self, summary: dict[str, Any]) -> Message:
        key = summary_key(summary["window"], summary["start"], summary["unit"]).encode()
        return self.topics.unit_scores, encode_summary(summary), key, 0

    def progress_message(self, watermarks_ms: dict[int, int]) -> Message:
        value = encode_summary({"progress": {str(p): w for p, w in watermarks_ms.items()}})
        return self.topics.unit_scores, value, progress_key(watermarks_ms).encode(), 0

    def tick_message(self, partition: int) -> Message:
        return self.topics.envelopes, TICK, None, partition
