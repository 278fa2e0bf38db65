"""What a crash at a dangerous moment must not lose, without Kafka: records owed to the output
topics (alert transitions, late events, dead letters), acknowledgements, network-level
confirmations and the unit cap's decisions. The same holes are exercised with a real
SIGKILL in tests/integration/test_durability.py."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from streams.core.plan import ScoringPlan
from streams.scoring.fold import PartitionState
from streams.scoring.keys import control_key
from streams.scoring.outbox import Outbox
from streams.scoring.persistence import flush, load_state
from streams.scoring.service import ScoringService
from streams.scoring.state import FoldConfig
from streams.sending import QueuedWrites
from tests.factories import event, local_ms
from tests.scoring.test_fold import CONFIG, NOW, entries
from tests.scoring.test_service import Envelope, Feeder, service_for


def control_of(feeder: Feeder) -> Any:
    value = feeder.table[control_key(0)]
    assert value is not None
    return orjson.loads(value)


def tick(feeder: Feeder, event: Any = None) -> list[Any]:
    """A flush tick into partition 0, as the agent delivers one; returns what the flush
    acknowledges."""
    load = lambda: list(feeder.table.items())  # noqa: E731
    return feeder.service.on_envelope(0, b"", event or Envelope(), load, feeder.write)


def reloaded(feeder: Feeder, config: FoldConfig = CONFIG) -> PartitionState:
    return load_state(0, config, list(feeder.table.items()), NOW)  # type: ignore[arg-type]


# -- 1. alert records ------------------------------------------------------------------------


def test_an_alert_taken_by_an_emit_is_persisted_by_a_flush_until_its_send_is_acknowledged(
    small_plan: ScoringPlan,
) -> None:
    service = service_for(small_plan)
    feeder = Feeder(small_plan, service)
    feeder.send(["2026-11-05 10:00"], backlog=False)
    alert = {"alert_id": "a1", "state": "firing"}
    service.partitions[0].state.outbox.add("alert", alert)
    emitted = service.emit()
    assert ("alert", alert) in [m[:2] for m in emitted.messages]
    # the dangerous moment: a flush while the send is on its way
    tick(feeder)
    assert [e[1:] for e in control_of(feeder)["outbox"]["entries"]] == [["alert", alert]]
    assert [e[1:] for e in reloaded(feeder).outbox.take()] == [["alert", alert]]
    # acknowledged: it leaves, the next emit asks for a flush, which persists that
    service.sent(emitted)
    assert ("tick", 0) in [m[:2] for m in service.emit().messages]
    tick(feeder)
    assert control_of(feeder)["outbox"]["entries"] == []
    # a later emit does not hand it out again
    assert not [m for m in service.emit().messages if m[0] == "alert"]


def test_an_unsent_emit_hands_its_outbox_records_out_again(small_plan: ScoringPlan) -> None:
    service = service_for(small_plan)
    feeder = Feeder(small_plan, service)
    feeder.send(["2026-11-05 10:00"], backlog=False)
    service.partitions[0].state.outbox.add("alert", {"alert_id": "a1"})
    emitted = service.emit()
    assert not [m for m in service.emit().messages if m[0] == "alert"]  # in flight
    service.unsent(emitted)
    assert [m[1] for m in service.emit().messages if m[0] == "alert"] == [{"alert_id": "a1"}]


def test_the_outbox_hands_out_in_order_and_confirms_only_what_was_sent() -> None:
    outbox = Outbox()
    outbox.extend("alert", [{"n": 1}, {"n": 2}])
    first = outbox.take()
    outbox.add("late", {"n": 3})
    assert [e[0] for e in first] == [0, 1]
    outbox.retry(first[-1][0])  # the send failed: handed out again, with what came since
    again = outbox.take()
    assert [e[0] for e in again] == [0, 1, 2] and outbox.take() == []
    assert outbox.confirm(1)  # only the first two made it
    assert [e[0] for e in outbox.entries] == [2]
    outbox.retry(2)
    assert [e[0] for e in outbox.take()] == [2]


# -- 2. late records -------------------------------------------------------------------------


def test_a_late_event_is_persisted_with_its_count_and_published_after_a_crash(
    small_plan: ScoringPlan,
) -> None:
    service = service_for(small_plan)
    feeder = Feeder(small_plan, service)
    feeder.send(["2026-11-05 12:00"], backlog=False)
    feeder.send(["2026-11-05 11:40"], backlog=False)  # 20 min behind, lateness 10
    service.emit()  # taken for sending ...
    tick(feeder)  # ... a flush persists the count ...
    recovered = reloaded(feeder)  # ... and the worker dies before the send is acknowledged
    assert recovered.counts.late == 1
    owed = recovered.outbox.take()
    assert [(kind, r["event_time"]) for _, kind, r in owed] == [
        ("late", local_ms("2026-11-05 11:40"))
    ]


# -- 3. acknowledgements ---------------------------------------------------------------------


def test_an_acknowledgement_is_committed_only_by_the_flush_that_persists_it(
    small_plan: ScoringPlan,
) -> None:
    service = service_for(small_plan)
    feeder = Feeder(small_plan, service)
    feeder.send(["2026-11-05 10:00"], backlog=False)
    tick(feeder)
    ack = Envelope()
    load = lambda: list(feeder.table.items())  # noqa: E731
    service.acknowledge(
        0, {"unit": "HPG", "service": "fixed_broadband", "by": "ops"}, ack, NOW, load
    )
    assert ack in service.partitions[0].pending  # waits for a flush
    assert ("tick", 0) in [m[:2] for m in service.emit().messages]  # a flush is asked for
    assert ack in tick(feeder)  # acknowledged with the flush that holds its effect


# -- 4. network confirmations ----------------------------------------------------------------


class FlakySender:
    """Fails its first `failures` sends; records what each send carried."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sends: list[list[Any]] = []

    async def send(self, messages: list[Any]) -> dict[tuple[str, int], int]:
        self.sends.append(list(messages))
        if self.failures:
            self.failures -= 1
            raise OSError("broker gone")
        return {("t", 0): len(self.sends)}


def test_a_failed_changelog_send_is_sent_again_in_order_and_then_acknowledges_its_events() -> None:
    from streams.worker.tables import AckAfterPersist

    async def scenario() -> tuple[list[list[Any]], list[int], list[bool]]:
        writes, acks = QueuedWrites(), AckAfterPersist()
        sender = FlakySender(failures=1)
        first, second = Envelope(), Envelope()
        acked: list[bool] = []
        writes.queue(("t", b"1", b"k1", 0, None))
        with pytest.raises(OSError):
            await acks.acknowledge(writes.send(sender), [first])  # type: ignore[arg-type]
        acked.append(bool(acks.waiting))  # still waiting: not acknowledged
        writes.queue(("t", b"2", b"k2", 0, None))
        await acks.acknowledge(writes.send(sender), [second])  # type: ignore[arg-type]
        acked.append(not acks.waiting)
        # a confirm after the failure does not raise for ever
        await writes.confirm()
        acked.append(True)
        return sender.sends, [len(s) for s in sender.sends], acked

    sends, sizes, acked = asyncio.run(scenario())
    assert sizes == [1, 2]  # the failed write went out again, in front of the newer one
    assert [m[1] for m in sends[1]] == [b"1", b"2"]
    assert acked == [True, True, True]


# -- 5. the unit cap -------------------------------------------------------------------------


def test_the_unit_cap_is_decided_by_the_partition_and_survives_a_restart(
    small_plan: ScoringPlan,
) -> None:
    config = FoldConfig(**{**CONFIG.__dict__, "max_units": 2})
    install = {"kind": "install", "status": "completed"}

    def rows(units: list[str], first_offset: int) -> Any:
        made = [event("install", "2026-11-05 10:00", unit=u, **install) for u in units]
        return entries(small_plan, made, sources=1, first_offset=first_offset)

    state = PartitionState(0, config)
    state.apply(rows(["HPG", "QBH", "HNI"], 0), NOW)
    assert sorted(state.units) == ["HPG", "QBH"] and state.counts.unit_cap == 1
    dead = [r for _, kind, r in state.outbox.take() if kind == "dead"]
    assert [(r["reason_code"], r["original"]["unit"]) for r in dead] == [("unit_cap", "HNI")]
    table = dict(flush(state))
    # a restart (and any other ingest) meets HNI first this time: still refused
    recovered = load_state(0, config, table.items(), NOW)  # type: ignore[arg-type]
    recovered.apply(rows(["HNI", "HPG"], 3), NOW)
    assert sorted(recovered.units) == ["HPG", "QBH"] and recovered.counts.unit_cap == 2
    # the refused entry re-delivered is not counted (nor dead-lettered) again
    recovered.apply(rows(["HNI"], 3), NOW)
    assert recovered.counts.unit_cap == 2 and recovered.counts.replayed == 1


def test_each_envelope_partition_admits_its_share_of_the_unit_cap() -> None:
    from streams.settings import load_settings

    assert load_settings(max_units=10, partitions=4).max_units_per_partition == 3
    assert load_settings(max_units=500, partitions=1).max_units_per_partition == 500


def test_scoring_service_counts_the_unit_cap_with_the_other_counts(
    small_plan: ScoringPlan,
) -> None:
    config = FoldConfig(**{**CONFIG.__dict__, "max_units": 1})
    service = ScoringService(
        small_plan,
        config,
        service_for(small_plan).outputs,
        flush_interval_s=60,
        idle_advance_s=600,
    )
    feeder = Feeder(small_plan, service)
    feeder.send(["2026-11-05 10:00"], backlog=False)
    state = service.partitions[0].state
    state.apply(
        entries(
            small_plan,
            [event("install", "2026-11-05 10:01", unit="QBH", kind="install", status="completed")],
            1,
            9,
        ),
        NOW,
    )
    assert service.counts().unit_cap == 1
