"""What a partition owes its output topics beyond scores: alert transitions, late events and
dead letters, each a record built by the fold (no Kafka).

Scores can be computed again from the windows at any time; these records cannot: an alert
transition happens once, a late event is counted once. So they wait here, persisted with the
partition's control value, and an entry leaves only after the broker acknowledged its send:

- `take()` hands out the entries not handed out yet (numbered in order) and remembers how far
  it went; a flush in between persists them all, sent or not.
- `confirm(seq)`: the send of every entry up to `seq` was acknowledged; they leave (the next
  flush persists their removal). `retry()`: the send failed; they are handed out again.

After a crash between an acknowledged send and the flush that persists its removal, the
entries are published once more: at least once, never lost. A replay re-creates an entry only
if the control value that counted it was lost too (it is written last in a flush), so
nothing is published twice from the fold itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

OutboxKind = Literal["alert", "late", "dead"]
# [seq, kind, record]: a list, as it is persisted (JSON)
OutboxEntry = list[Any]


@dataclass
class Outbox:
    entries: list[OutboxEntry] = field(default_factory=list)
    next_seq: int = 0
    # entries up to this seq were handed out for sending and not confirmed nor failed yet
    # (memory only: a reloaded outbox sends everything it holds)
    handed_out: int = -1

    def add(self, kind: OutboxKind, record: dict[str, Any]) -> None:
        self.entries.append([self.next_seq, kind, record])
        self.next_seq += 1

    def extend(self, kind: OutboxKind, records: list[dict[str, Any]]) -> None:
        for record in records:
            self.add(kind, record)

    def take(self) -> list[OutboxEntry]:
        """The entries to send now (not handed out before)."""
        handed_out = self.handed_out
        fresh = [e for e in self.entries if e[0] > handed_out]
        if fresh:
            self.handed_out = fresh[-1][0]
        return fresh

    def confirm(self, seq: int) -> bool:
        """Entries up to `seq` were sent; True if any left the outbox."""
        before = len(self.entries)
        self.entries = [e for e in self.entries if e[0] > seq]
        return len(self.entries) != before

    def retry(self, seq: int) -> None:
        """The send of the entries up to `seq` failed: hand them out again (and what came
        after them: sends go one at a time, the emit task awaits each)."""
        unconfirmed = [e[0] for e in self.entries if e[0] <= seq]
        if unconfirmed:
            self.handed_out = min(self.handed_out, unconfirmed[0] - 1)

    def __len__(self) -> int:
        return len(self.entries)

    def dump(self) -> dict[str, Any]:
        return {"entries": self.entries, "next_seq": self.next_seq}

    @classmethod
    def load(cls, data: dict[str, Any] | None) -> Outbox:
        if not data:
            return cls()
        return cls(entries=data["entries"], next_seq=data["next_seq"])


def late_record(row: Any, watermark_ms: int, lateness_ms: int) -> dict[str, Any]:
    """The `cx.late` record (schemas/out/late_event.avsc) of an envelope entry that came
    later than the watermark minus the allowed lateness."""
    unit, source, offset, event_id, event_time, _, etype, service, _ = row
    topic, _, partition = source.rpartition("#")
    return {
        "event_id": event_id,
        "event_type": etype,
        "unit": unit,
        "service": service,
        "event_time": event_time,
        "watermark_ms": watermark_ms,
        "allowed_lateness_ms": lateness_ms,
        "source_topic": topic,
        "source_partition": int(partition),
        "source_offset": offset,
    }


def unit_cap_record(row: Any, cap: int, now_ms: int) -> dict[str, Any]:
    """The dead letter (schemas/out/dead_letter.avsc) of an entry of a unit past the cap.
    The fold holds the event's KPI contributions, not its bytes: `original` is a JSON
    summary of the event (as text here, bytes on the wire); the original stays readable at
    its source offset."""
    unit, source, offset, event_id, event_time, _, etype, service, _ = row
    topic, _, partition = source.rpartition("#")
    summary = {
        "type": etype,
        "event_id": event_id,
        "event_time": event_time,
        "unit": unit,
        "service": service,
    }
    return {
        "original": summary,
        "original_key": None,
        "source_topic": topic,
        "source_partition": int(partition),
        "source_offset": offset,
        "reason_code": "unit_cap",
        "reason": f"more than {cap} distinct units in this envelope partition; the original "
        "is at its source offset",
        "dead_lettered_at_ms": now_ms,
    }
