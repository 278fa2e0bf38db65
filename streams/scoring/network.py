"""The network level: every unit's latest scores per window, gathered in one place (no Kafka).

Units are scored in their own partitions (possibly on other workers); each publication of a
unit window also sends a summary (the unit's rows) to a single-partition topic, which one
agent folds here into the network record of that window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.core.plan import ScoringPlan
from streams.core.records import Record, RecordKey, annotate, network_means, network_row
from streams.core.windows import LocalCalendar, WindowKind

WindowId = tuple[str, int]  # (kind, start_ms)


@dataclass
class NetworkWindow:
    window_start: str
    units: dict[str, dict[str, Any]] = field(default_factory=dict)  # unit -> summary
    revision: int = 0
    changed: bool = False
    published_score: float | None = None
    final: bool = False


class NetworkState:
    def __init__(self, plan: ScoringPlan) -> None:
        self.plan = plan
        self.calendar = LocalCalendar(plan.catalog.timezone)
        self.windows: dict[WindowId, NetworkWindow] = {}

    def add(self, summary: dict[str, Any]) -> None:
        key = (summary["window"], summary["start"])
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = NetworkWindow(summary["window_start"])
        window.units[summary["unit"]] = summary
        window.changed = True

    def publish(self, now_ms: int) -> tuple[list[Record], list[dict[str, Any]]]:
        """Network records of the windows whose unit scores changed since the last time, and
        each such window's means across units (for the units' `delta_network`)."""
        out = []
        views = []
        for key in sorted(self.windows):
            window = self.windows[key]
            if not window.changed:
                continue
            kind, start = key
            row = network_row(self.plan, {u: s["score"] for u, s in window.units.items()})
            previous = self.windows.get((kind, self.calendar.previous_start(_kind(kind), start)))
            before: dict[RecordKey, float | None] | None = None
            if previous is not None and previous.published_score is not None:
                before = {("network", None, None, None, None): previous.published_score}
            annotate(
                [row],
                window=kind,
                window_start=window.window_start,
                version=self.plan.version,
                previous=before,
                means=None,
                network_score=None,
            )
            window.revision += 1
            window.changed = False
            window.final = all(s["final"] for s in window.units.values())
            window.published_score = row["score"]
            row.update(
                window_start_ms=start,
                revision=window.revision,
                final=window.final,
                published_at_ms=now_ms,
                newest_event_ingest_ms=None,
            )
            out.append(row)
            keyed = [
                {"level": level, "service": svc, "touchpoint": tp, "kpi": kpi, "score": score}
                for summary in window.units.values()
                for level, svc, tp, kpi, score in summary.get("rows", ())
            ]
            views.append(
                {
                    "window": kind,
                    "start": start,
                    "network": row["score"],
                    "means": [[*k, v] for k, v in network_means(keyed).items()],
                }
            )
        return out, views

    def expire(self, keep_per_kind: int = 3) -> None:
        """Keep the newest windows of each kind (the older ones are final and published)."""
        for kind in ("day", "month"):
            starts = sorted(s for k, s in self.windows if k == kind)
            for start in starts[:-keep_per_kind]:
                if self.windows[(kind, start)].final:
                    del self.windows[(kind, start)]


def _kind(kind: str) -> WindowKind:
    return "day" if kind == "day" else "month"


def encode_summary(summary: dict[str, Any]) -> bytes:
    return orjson.dumps(summary)


def decode_summary(value: Any) -> dict[str, Any]:
    # recovered table values arrive already decoded (Faust's JSON codec on the changelog)
    summary: dict[str, Any] = value if isinstance(value, dict) else orjson.loads(value)
    return summary
