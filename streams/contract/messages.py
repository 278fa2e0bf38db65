"""The shapes the scoring service, the worker and the wire agree on (no Kafka, no codec).

A `Message` is what any of our producers sends: `BatchSender` takes lists of them, the
scoring service returns them, `streams.wire.messages.OutputMessages` builds them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

# topic, value (None: a tombstone), key, partition (None: by key), timestamp ms (None: now)
Message = tuple[str, bytes | None, bytes | None, int | None, int | None]

# An empty envelope: lets the agent flush an idle partition. Through the topic, not from a
# timer: Faust's tables (and their RocksDB store) take the partition of a write from the
# current event, and only the agent iterating an envelope of that partition has one.
TICK = b""


class Ackable(Protocol):
    """An input event the worker acknowledges once its effect is persisted (Faust's)."""

    def ack(self) -> bool: ...


class Outputs(Protocol):
    """Encodes published records into messages and knows the topics."""

    def score_message(self, record: dict[str, Any], stamp_ms: int | None = None) -> Message: ...

    def outbox_message(self, kind: str, record: dict[str, Any]) -> Message: ...

    def programme_message(self, record: dict[str, Any], stamp_ms: int) -> Message: ...

    def tick_message(self, partition: int) -> Message: ...

    def summary_message(self, summary: dict[str, Any]) -> Message: ...

    def progress_message(self, watermarks_ms: dict[int, int]) -> Message: ...

    def tombstones(self, keys: Iterable[tuple[str, bytes]]) -> list[Message]: ...
