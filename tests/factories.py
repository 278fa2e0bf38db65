"""Event builders shared by the tests."""

from __future__ import annotations

from datetime import datetime
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
_ids = count()


def local_ms(text: str) -> int:
    """Epoch ms of a local (UTC+7) wall-clock time, e.g. '2026-11-05 10:00'."""
    return int(datetime.fromisoformat(text).replace(tzinfo=LOCAL).timestamp() * 1000)


def event(etype: str, when: str = "2026-11-05 10:00", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": etype,
        "event_id": f"e{next(_ids)}",
        "event_time": local_ms(when),
        "unit": "HPG",
        "service": "mobile",
        "customer_ref": "c1",
        "channel": "app",
    }
    base.update(fields)
    return base


def a_score_record() -> dict[str, Any]:
    """A unit-level CemiScore output record, as the stream publishes it."""
    return {
        "level": "unit",
        "window": "day",
        "window_start": "2026-11-01T00:00:00+07:00",
        "window_start_ms": 1_793_466_000_000,
        "unit": "HPG",
        "service": None,
        "touchpoint": None,
        "kpi": None,
        "coverage": 1.0,
        "score": 3.7,
        "class": "good",
        "delta_prev": None,
        "delta_network": 0.1,
        "target_ratio": 0.925,
        "catalog_version": "2026.11",
        "revision": 3,
        "final": False,
        "published_at_ms": 1,
        "newest_event_ingest_ms": None,
    }
