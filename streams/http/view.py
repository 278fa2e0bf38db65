"""The API's view of the output topics: the latest score/KPI record per key of the newest
window per (window kind, unit), kept as the bytes read and decoded on first use, and the
latest record per alert id. Memory is bounded by units x catalog size, never by history."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from streams.http.params import LEVEL_ORDER

log = logging.getLogger(__name__)

KeyParts = tuple[str, str, str, str, str, str, str]  # level, unit, service, tp, kpi, window, start


@dataclass
class Latest:
    """The latest value of one key: its key's parts, its bytes, decoded on first use."""

    parts: KeyParts
    raw: bytes
    record: dict[str, Any] | None = None


@dataclass
class Ranked:
    """The latest standings record of one key, kept as its bytes (decoded on first use: the
    network level republishes hundreds of them a second while it catches up)."""

    start: str  # window_start as published: ordered as text, like `Window.start`
    raw: bytes
    record: dict[str, Any] | None = None


@dataclass
class Window:
    start: str  # window_start as published (ISO, local offset): one format, ordered as text
    records: dict[bytes, Latest] = field(default_factory=dict)
    in_order: list[Latest] | None = None  # records in answer order, until a key is added

    def ordered(self) -> list[Latest]:
        if self.in_order is None:
            self.in_order = sorted(self.records.values(), key=lambda latest: _order(latest.parts))
        return self.in_order


def key_parts(key: bytes | None) -> KeyParts | None:
    """`level/unit/service/touchpoint/kpi/window/window_start` ("-" for none)."""
    if not key:
        return None
    try:
        parts = key.decode().split("/")
    except UnicodeDecodeError:
        return None
    if len(parts) != 7:
        return None
    return parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], parts[6]


def _order(parts: KeyParts) -> tuple[str, str, str, int]:
    """Within a unit's window: top-down (unit, then each service, its touchpoints, KPIs)."""
    level, _, service, touchpoint, kpi, _, _ = parts
    return service, touchpoint, kpi, LEVEL_ORDER.get(level, 9)


class OutputView:
    """Latest score/KPI records per key of the newest window per (kind, unit); alerts by id."""

    def __init__(self) -> None:
        self.windows: dict[tuple[str, str], Window] = {}
        self.alerts: dict[str, dict[str, Any]] = {}
        # the newest window's standings per (kind, service, touchpoint)
        self.standings: dict[tuple[str, str | None, str | None], Ranked] = {}
        # the newest window's programme records per (kind, unit, programme, indicator)
        self.programmes: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.caught_up = False
        self.undecodable = 0

    def add_score(self, key: bytes | None, value: bytes | None) -> None:
        parts = key_parts(key)
        if parts is None or not value or key is None:
            return
        slot = (parts[5], parts[1])
        window = self.windows.get(slot)
        start = parts[6]
        if window is None or start > window.start:
            window = self.windows[slot] = Window(start)
        elif start < window.start:
            return  # an older window: only the newest is kept
        latest = window.records.get(key)
        if latest is not None:
            latest.raw, latest.record = value, None
        else:
            window.records[key] = Latest(parts, value)
            window.in_order = None

    def forget_score(self, key: bytes | None) -> None:
        parts = key_parts(key)
        if parts is None or key is None:
            return
        window = self.windows.get((parts[5], parts[1]))
        if window is not None and window.start == parts[6]:
            if window.records.pop(key, None) is not None:
                window.in_order = None
            if not window.records:
                del self.windows[(parts[5], parts[1])]

    def add_standings(self, key: bytes | None, value: bytes) -> None:
        """Keep a standings record if its window is the newest of its kind and key (read from
        its key, `window/window_start/service/touchpoint`, without decoding it)."""
        parts = key.decode(errors="replace").split("/") if key else []
        if len(parts) != 4:
            self.undecodable += 1
            return
        kind, start, service, touchpoint = parts
        slot = (
            kind,
            None if service == "-" else service,
            None if touchpoint == "-" else touchpoint,
        )
        kept = self.standings.get(slot)
        if kept is None or start >= kept.start:
            self.standings[slot] = Ranked(start, value)

    def add_programme(self, record: dict[str, Any]) -> None:
        """Keep a programme record if its window is the newest of its kind for its unit,
        programme and indicator."""
        slot = tuple(record.get(k) for k in ("window", "unit", "programme", "indicator"))
        kept = self.programmes.get(slot)
        if kept is None or record.get("window_start_ms", 0) >= kept.get("window_start_ms", 0):
            self.programmes[slot] = record

    def add_alert(self, record: dict[str, Any]) -> None:
        alert_id = record.get("alert_id")
        if isinstance(alert_id, str):
            self.alerts[alert_id] = record

    def select(self, where: dict[str, str]) -> Iterator[Latest]:
        """Kept records whose key matches `where` (level, unit, service, touchpoint, window),
        in answer order: by window kind, unit (the network first), then top-down."""
        level, service, touchpoint = (where.get(k) for k in ("level", "service", "touchpoint"))
        unit, window = where.get("unit"), where.get("window")
        for (kind, slot_unit), kept in sorted(self.windows.items()):
            if (unit is not None and slot_unit != unit) or (window is not None and kind != window):
                continue
            for latest in kept.ordered():
                parts = latest.parts
                if (
                    (level is None or parts[0] == level)
                    and (service is None or parts[2] == service)
                    and (touchpoint is None or parts[3] == touchpoint)
                ):
                    yield latest
