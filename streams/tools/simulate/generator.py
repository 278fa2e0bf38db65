"""Seeded generator of realistic touchpoint events, with named incident scenarios.

Used by `cemi simulate`, the benchmarks and the tests. Events come out in event-time order
as plain dicts in the JSON shape of the batch scorer (and of the stream's JSON input).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from streams.core.events import SERVICES

DAY_MS: Final = 86_400_000
DEFAULT_UNITS: Final = ("HPG", "QBH", "HNI", "HCM", "DNG", "CTO", "KHA", "NAN")
# Share of each event type in the stream (subscriber_base snapshots are added per day).
TYPE_MIX: Final = (
    ("order", 0.15),
    ("install", 0.12),
    ("ticket", 0.25),
    ("payment", 0.25),
    ("cancellation", 0.05),
    ("survey", 0.18),
)
SERVICE_MIX: Final = (
    ("mobile", 0.40),
    ("fixed_broadband", 0.25),
    ("mytv", 0.15),
    ("digital_personal", 0.12),
    ("digital_enterprise", 0.08),
)
TOUCHPOINTS: Final = (
    "observe",
    "search_respond",
    "consult",
    "order",
    "contract",
    "install",
    "activate",
    "use",
    "billing",
    "payment",
    "support",
    "repair",
    "complaint",
    "care",
    "change",
    "leave",
)
# Active subscribers per daily event of a unit-service: with the type mix below, about
# 15 completed cancellations per 1,000 subscribers per 30 days (1.5 % monthly churn)
SUBSCRIBERS_PER_DAILY_EVENT: Final = 20.0
DIGITAL: Final = ("web", "app", "chatbot")
RECOVERY_PROGRAMME: Final = "install_recovery_hpg"  # the default catalog's action programme
OTHER_CHANNELS: Final = ("store", "call_center", "field", "social")


@dataclass(frozen=True)
class Incident:
    """A named degradation of one unit (and optionally service) during [start_ms, end_ms)."""

    scenario: str  # install_backlog | payment_gateway | complaint_surge
    unit: str
    start_ms: int
    end_ms: int
    service: str | None = None

    def active(self, unit: str, service: str, time_ms: int) -> bool:
        return (
            unit == self.unit
            and (self.service is None or service == self.service)
            and self.start_ms <= time_ms < self.end_ms
        )


SCENARIOS: Final = ("install_backlog", "payment_gateway", "complaint_surge")


@dataclass
class Generator:
    units: tuple[str, ...] = DEFAULT_UNITS
    start_ms: int = 1_793_466_000_000  # 2026-10-31T17:00:00Z = 2026-11-01 00:00 local (UTC+7)
    span_ms: int = 2 * DAY_MS
    seed: int = 7
    incidents: tuple[Incident, ...] = ()
    duplicate_ratio: float = 0.0
    # active subscribers per unit and service; None: in proportion to the unit-service's
    # daily events (SUBSCRIBERS_PER_DAILY_EVENT), so rates per 1,000 subscribers per 30 days
    # come out the same at any volume (a live demo and a month of history alike)
    base_subscribers: int | None = None
    _rng: random.Random = field(init=False, repr=False)
    _quality: dict[str, float] = field(init=False, repr=False)
    _daily_events: float = field(init=False, repr=False, default=0.0)  # per unit

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        # Each unit has its own service quality in [0.90, 0.99], so units score differently
        # while the default catalog rates normal operation fair to excellent.
        self._quality = {u: 0.90 + 0.09 * self._rng.random() for u in self.units}
        self._types = [t for t, _ in TYPE_MIX]
        self._type_weights = [w for _, w in TYPE_MIX]
        self._services = [s for s, _ in SERVICE_MIX]
        self._service_weights = [w for _, w in SERVICE_MIX]
        assert set(self._services) == set(SERVICES)

    def events(self, count: int) -> Iterator[dict[str, Any]]:
        """`count` events spread evenly over the span, in event-time order, plus snapshots."""
        rng = self._rng
        next_snapshot = self.start_ms
        recent: list[dict[str, Any]] = []
        step = self.span_ms / max(count, 1)
        self._daily_events = count * DAY_MS / max(self.span_ms, 1) / len(self.units)
        updates = self._programme_updates()
        for i in range(count):
            time_ms = self.start_ms + int(i * step)
            while next_snapshot <= time_ms:
                yield from self._snapshots(next_snapshot, i)
                next_snapshot += DAY_MS
            while updates and updates[0]["event_time"] <= time_ms:
                yield updates.pop(0)
            if recent and rng.random() < self.duplicate_ratio:
                yield dict(rng.choice(recent))  # a re-sent event: same event_id
                continue
            event = self._event(i, time_ms)
            # re-sends repeat one of the last few events, as a producer retry would
            if len(recent) < 20:
                recent.append(event)
            else:
                recent[i % 20] = event
            yield event

    def _snapshots(self, time_ms: int, sequence: int) -> Iterator[dict[str, Any]]:
        for unit in self.units:
            for service in SERVICES:
                yield {
                    "type": "subscriber_base",
                    "event_id": f"{self.seed}-base-{unit}-{service}-{time_ms}",
                    "event_time": time_ms,
                    "unit": unit,
                    "service": service,
                    "customer_ref": "base",
                    "channel": "auto",
                    "active_subscribers": int(
                        self._base(service) * (0.5 + self._quality[unit]) + sequence % 97
                    ),
                }

    def _programme_updates(self) -> list[dict[str, Any]]:
        """An install backlog's recovery programme (the default catalog's
        `install_recovery_hpg`): from the incident on, its indicators improve steadily to the
        end of the span, about 60 updates each (at most one per 30 s)."""
        end = self.start_ms + self.span_ms
        out: list[dict[str, Any]] = []
        for incident in self.incidents:
            if incident.scenario != "install_backlog":
                continue
            length = max(1, end - incident.start_ms)
            step = max(length // 60, 30_000)
            for time_ms in range(incident.start_ms, end, step):
                progress = (time_ms - incident.start_ms) / length
                for indicator, value in (
                    ("technicians_trained_share", round(0.1 + 0.85 * progress, 3)),
                    ("install_backlog_orders", round(220 - 190 * progress, 1)),
                ):
                    event_id = f"{self.seed}-programme-{incident.unit}-{indicator}-{time_ms}"
                    out.append(
                        {
                            "type": "programme_update",
                            "event_id": event_id,
                            "event_time": time_ms,
                            "unit": incident.unit,
                            "programme": RECOVERY_PROGRAMME,
                            "indicator": indicator,
                            "value": value,
                        }
                    )
        return sorted(out, key=lambda e: e["event_time"])

    def _base(self, service: str) -> float:
        if self.base_subscribers is not None:
            return self.base_subscribers
        share = dict(SERVICE_MIX)[service]
        return max(1.0, SUBSCRIBERS_PER_DAILY_EVENT * self._daily_events * share)

    def _event(self, sequence: int, time_ms: int) -> dict[str, Any]:
        rng = self._rng
        unit = rng.choice(self.units)
        service = rng.choices(self._services, self._service_weights)[0]
        etype = rng.choices(self._types, self._type_weights)[0]
        incident = next(
            (i.scenario for i in self.incidents if i.active(unit, service, time_ms)), None
        )
        if incident == "complaint_surge" and rng.random() < 0.4:
            etype = "ticket"
        quality = self._quality[unit]
        event: dict[str, Any] = {
            "type": etype,
            "event_id": f"{self.seed}-{sequence:09d}",
            "event_time": time_ms,
            "unit": unit,
            "service": service,
            "customer_ref": f"c{rng.randrange(10_000_000):07d}",
            "channel": rng.choice(DIGITAL) if rng.random() < 0.6 else rng.choice(OTHER_CHANNELS),
        }
        event.update(getattr(self, f"_{etype}")(quality, incident))
        return event

    def _ok(self, p: float) -> bool:
        return self._rng.random() < p

    def _hours(self, mean: float) -> float:
        return round(self._rng.expovariate(1.0 / mean), 2)

    def _order(self, q: float, incident: str | None) -> dict[str, Any]:
        rng = self._rng
        kind = rng.choice(("new", "new", "change", "upgrade", "relocate", "consult"))
        status = "completed" if self._ok(q) else rng.choice(("submitted", "failed", "cancelled"))
        hours = (1.5 if kind == "consult" else 8.0) / q
        return {
            "kind": kind,
            "status": status,
            "lead_time_hours": self._hours(hours) if status == "completed" else None,
        }

    def _install(self, q: float, incident: str | None) -> dict[str, Any]:
        backlog = incident == "install_backlog"
        ok = min(0.998, q + 0.05)
        status = "completed" if self._ok(ok) else self._rng.choice(("failed", "rescheduled"))
        done = status == "completed"
        return {
            "kind": "install" if self._ok(0.6) else "activation",
            "status": status,
            "on_time": self._ok(0.25 if backlog else ok) if done else None,
            "first_time_right": self._ok(ok) if done else None,
            "delay_hours": self._hours(48 if backlog else 2 / q) if done else None,
        }

    def _ticket(self, q: float, incident: str | None) -> dict[str, Any]:
        rng = self._rng
        surge = incident == "complaint_surge"
        category = (
            "complaint"
            if surge and self._ok(0.6)
            else rng.choice(("inquiry", "support", "fault", "complaint", "quality"))
        )
        status = "reopened" if self._ok(0.04) else rng.choice(("opened", "resolved", "resolved"))
        resolved = status != "opened"
        return {
            "category": category,
            "status": status,
            "resolution_hours": self._hours(30 if surge else 6 / q) if resolved else None,
            "sla_met": self._ok(0.4 if surge else min(0.995, q + 0.03)) if resolved else None,
            "first_response_minutes": self._hours(45 if surge else 4 / q),
        }

    def _payment(self, q: float, incident: str | None) -> dict[str, Any]:
        failing = incident == "payment_gateway"
        kind = "dispute" if self._ok(0.0003) else self._rng.choice(("bill", "payment"))
        on_time = 0.985 + (q - 0.9) / 6 if kind == "bill" else min(0.99, q + 0.03)
        return {
            "kind": kind,
            "status": "succeeded" if self._ok(0.45 if failing else 0.9 + q / 10) else "failed",
            "amount_vnd": self._rng.randrange(50_000, 2_000_000, 1000),
            "on_time": self._ok(on_time),
        }

    def _cancellation(self, q: float, incident: str | None) -> dict[str, Any]:
        rng = self._rng
        return {
            "status": rng.choice(("requested", "retained", "completed")),
            "reason": rng.choice(
                ("price", "quality", "support", "relocation", "competitor", "other")
            ),
        }

    def _survey(self, q: float, incident: str | None) -> dict[str, Any]:
        rng = self._rng
        touchpoint = rng.choice(TOUCHPOINTS)
        unhappy = incident is not None and touchpoint in ("install", "payment", "complaint")
        mood = 0.3 if unhappy else q
        return {
            "touchpoint": touchpoint,
            "csat": min(5, max(1, round(rng.gauss(1 + 4 * mood, 0.8)))) if self._ok(0.9) else None,
            "nps": min(10, max(0, round(rng.gauss(10 * mood, 1.5)))) if self._ok(0.7) else None,
            "ces": min(7, max(1, round(rng.gauss(7 - 5 * mood, 1)))) if self._ok(0.5) else None,
        }
