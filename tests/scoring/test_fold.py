"""The partition fold: replays skipped, duplicates and late events counted once, and state
that survives a crash at any point of a flush (pure: no broker)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.contract.envelope import Entry, decode_envelope, encode_envelope, entry_for
from streams.core.events import validate_event
from streams.core.plan import ScoringPlan
from streams.scoring.expiry import expire_slices
from streams.scoring.fold import PartitionState
from streams.scoring.persistence import flush, load_state
from streams.scoring.state import FoldConfig
from tests.factories import event, local_ms
from tests.strategies import event_lists

CONFIG = FoldConfig(
    "Asia/Ho_Chi_Minh",
    allowed_lateness_ms=600_000,
    rolling_span_ms=3_600_000,
    rolling_slice_ms=60_000,
)
NOW = 1_900_000_000_000


def entries(
    plan: ScoringPlan, events: list[dict[str, Any]], sources: int = 3, first_offset: int = 0
) -> list[Entry]:
    """Events as envelope entries, spread over a few sources with increasing offsets."""
    offsets = [first_offset] * sources
    out = []
    for i, e in enumerate(events):
        e = validate_event(dict(e))
        source = i % sources
        row = entry_for(e, plan.contributions(e), f"in{source}", 0, offsets[source], 1)
        offsets[source] += 1
        out.append(row)
    return decode_envelope(encode_envelope(out))


def envelopes(items: list[Entry], size: int) -> list[list[Entry]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def snapshot(state: PartitionState) -> dict[Any, Any]:
    windows = {
        key: {i: [round(x, 9) for x in acc] for i, acc in w.accumulators.items()}
        for key, w in state.windows.items()
    }
    for unit, unit_state in state.units.items():
        for start, accumulators in unit_state.slices.items():
            rounded = {i: [round(x, 9) for x in acc] for i, acc in accumulators.items()}
            windows[(unit, "slice", start)] = rounded
    c = state.counts
    return {"windows": windows, "counts": (c.scored, c.duplicates, c.late)}


def test_replayed_entries_are_skipped_and_duplicates_counted_once(small_plan: ScoringPlan) -> None:
    install = {"kind": "install", "status": "completed", "on_time": True, "delay_hours": 1.0}
    first = event("install", "2026-11-05 10:00", **install)
    resent = dict(first)  # same event_id, new source coordinates: a duplicate
    items = entries(small_plan, [first, resent], sources=2)
    state = PartitionState(0, CONFIG)
    state.apply(items, NOW)
    state.apply(items, NOW)  # the same envelope again (a re-delivery): skipped whole
    assert (state.counts.scored, state.counts.duplicates, state.counts.replayed) == (1, 1, 2)
    day = state.windows[("HPG", "day", local_ms("2026-11-05 00:00"))]
    on_time = next(k.index for k in small_plan.kpis if k.kpi == "on_time")
    assert day.accumulators[on_time] == [1.0, 1.0, 0.0]


def test_events_behind_the_watermark_by_more_than_the_lateness_are_late(
    small_plan: ScoringPlan,
) -> None:
    install = {"kind": "install", "status": "completed"}
    state = PartitionState(0, CONFIG)
    state.apply(entries(small_plan, [event("install", "2026-11-05 12:00", **install)]), NOW)
    assert state.watermark_ms == local_ms("2026-11-05 12:00")
    late = event("install", "2026-11-05 11:49", **install)
    in_time = event("install", "2026-11-05 11:51", **install)
    state.apply(entries(small_plan, [late, in_time], sources=1, first_offset=1), NOW)
    owed = state.outbox.take()
    assert [(kind, r["event_id"]) for _, kind, r in owed] == [("late", late["event_id"])]
    assert owed[0][2]["watermark_ms"] == local_ms("2026-11-05 12:00")
    assert (state.counts.scored, state.counts.late) == (2, 1)


def test_the_watermark_waits_for_the_slowest_active_source(small_plan: ScoringPlan) -> None:
    install = {"kind": "install", "status": "completed"}
    state = PartitionState(0, CONFIG)
    ahead = entries(small_plan, [event("install", "2026-11-05 12:00", **install)], sources=1)
    behind = [
        e._replace(source="slow", offset=0)
        for e in entries(small_plan, [event("install", "2026-11-05 09:00", **install)], sources=1)
    ]
    state.apply(behind, NOW)
    state.apply(ahead, NOW)
    assert state.watermark_ms == local_ms("2026-11-05 09:00")
    state.clock.refresh(NOW + CONFIG.source_idle_ms + 1)  # both idle: all was seen
    assert state.watermark_ms == local_ms("2026-11-05 12:00")


def test_a_silent_source_with_a_backlog_holds_the_watermark_past_the_idle_time(
    small_plan: ScoringPlan,
) -> None:
    """A rebalance silences a source for longer than the idle time; while its last envelope
    said it had records left on the broker it still holds the watermark (else the other
    sources would run ahead and its unread events would arrive late)."""
    install = {"kind": "install", "status": "completed"}
    state = PartitionState(0, CONFIG)
    slow = [
        e._replace(source="slow", offset=0)
        for e in entries(small_plan, [event("install", "2026-11-05 09:00", **install)], sources=1)
    ]
    state.apply(slow, NOW, behind=["slow"])
    later = NOW + CONFIG.source_idle_ms + 1
    state.apply(
        entries(small_plan, [event("install", "2026-11-05 12:00", **install)], sources=1), later
    )
    assert state.watermark_ms == local_ms("2026-11-05 09:00")  # still held by the backlog
    state.apply(slow[:0], NOW + CONFIG.behind_source_idle_ms + 1)  # silent far too long
    assert state.watermark_ms == local_ms("2026-11-05 12:00")

    caught_up = PartitionState(0, CONFIG)  # the same without a backlog: released at idle
    caught_up.apply(slow, NOW)
    caught_up.apply(
        entries(small_plan, [event("install", "2026-11-05 12:00", **install)], sources=1), later
    )
    assert caught_up.watermark_ms == local_ms("2026-11-05 12:00")


def test_a_source_behind_whose_next_record_is_held_counts_at_that_record_not_at_its_last(
    small_plan: ScoringPlan,
) -> None:
    """The daily subscriber snapshots: one record per unit and day, so in a replay their
    source always has records left and its last one is at midnight. Its ingest holds the
    next (tomorrow's midnight) in its merge, so nothing older comes from it: the other
    sources carry the watermark through the day, and the day closes on time."""
    install = {"kind": "install", "status": "completed"}
    state = PartitionState(0, CONFIG)
    snapshots = [
        e._replace(source="base", offset=0)
        for e in entries(small_plan, [event("install", "2026-11-05 00:00", **install)], sources=1)
    ]
    tomorrow = local_ms("2026-11-06 00:00")
    morning = entries(small_plan, [event("install", "2026-11-05 12:00", **install)], sources=1)
    evening = entries(
        small_plan, [event("install", "2026-11-05 23:00", **install)], sources=1, first_offset=1
    )
    state.apply([*snapshots, *morning], NOW, behind=["base"], next_event_ms={"base": tomorrow})
    state.apply(evening, NOW + 1_000, behind=["base"], next_event_ms={"base": tomorrow})
    assert state.watermark_ms == local_ms("2026-11-05 23:00")

    unknown = PartitionState(0, CONFIG)  # its next record not fetched yet: held at its last
    unknown.apply([*snapshots, *morning], NOW, behind=["base"])
    unknown.apply(evening, NOW + 1_000, behind=["base"])
    assert unknown.watermark_ms == local_ms("2026-11-05 00:00")

    silent = PartitionState(0, CONFIG)  # reported behind before it delivered anything here
    silent.apply(morning, NOW, behind=["base"], next_event_ms={"base": tomorrow})
    silent.apply(evening, NOW + 1_000, behind=["base"], next_event_ms={"base": tomorrow})
    assert silent.watermark_ms == local_ms("2026-11-05 23:00")


def test_a_source_with_a_backlog_holds_the_watermark_before_it_delivered_anything(
    small_plan: ScoringPlan,
) -> None:
    """Two workers start on a backlog: the second one's sources have delivered nothing yet,
    but the ingest that owns them reports them behind; the first one's event time must not
    run ahead of them (their events would all be late)."""
    install = {"kind": "install", "status": "completed"}
    state = PartitionState(0, CONFIG)
    first = entries(small_plan, [event("install", "2026-11-05 09:00", **install)], sources=1)
    state.apply(first, NOW, behind=["other#3"], caught_up=[first[0].source])
    days_later = entries(
        small_plan, [event("install", "2026-11-07 09:00", **install)], sources=1, first_offset=1
    )
    state.apply(days_later, NOW + 1_000, caught_up=[first[0].source])
    assert state.watermark_ms == local_ms("2026-11-05 09:00")  # held by the silent backlog
    state.apply([], NOW + 2_000, caught_up=["other#3"])  # its ingest says it caught up
    state.clock.refresh(NOW + 2_000 + CONFIG.source_idle_ms + 1)
    assert state.watermark_ms == local_ms("2026-11-07 09:00")


def test_a_silent_source_reported_in_the_first_envelope_holds_at_its_oldest_event(
    small_plan: ScoringPlan,
) -> None:
    """Two workers start together on a backlog of sparse history: one batch of the first
    spans hours of event time. The other worker's sources, reported behind in that first
    envelope, must hold the watermark where the envelope starts, not where its sources got
    to (their first records would all be late: 1,603 of 200,000 in a bench run)."""
    install = {"kind": "install", "status": "completed"}
    state = PartitionState(0, CONFIG)
    hours = [event("install", f"2026-11-05 {hour:02d}:00", **install) for hour in (9, 12, 15, 18)]
    first = entries(small_plan, hours, sources=1)
    state.apply(first, NOW, group_behind=["other#3"])
    assert state.watermark_ms == local_ms("2026-11-05 09:00")
    other = entries(small_plan, [event("install", "2026-11-05 09:30", **install)], sources=1)
    late_before = state.counts.late
    state.apply([other[0]._replace(source="other#3")], NOW + 1_000)
    assert state.counts.late == late_before  # 9:30 is not late: the watermark held


def test_a_source_only_the_group_view_reports_behind_holds_the_watermark_for_a_while_only(
    small_plan: ScoringPlan,
) -> None:
    """During a rebalance an ingest reports the group's unread partitions, whoever owns them;
    that view can be stale (its owner may have read them since), so it holds the watermark
    for `group_behind_idle_ms`, not for the 3 minutes an owner's own report does."""
    install = {"kind": "install", "status": "completed"}
    state = PartitionState(0, CONFIG)
    first = entries(small_plan, [event("install", "2026-11-05 09:00", **install)], sources=1)
    state.apply(first, NOW, caught_up=[first[0].source], group_behind=["other#3"])
    days_later = entries(
        small_plan, [event("install", "2026-11-07 09:00", **install)], sources=1, first_offset=1
    )
    state.apply(days_later, NOW + 1_000, caught_up=[first[0].source])
    assert state.watermark_ms == local_ms("2026-11-05 09:00")  # held
    state.clock.refresh(NOW + CONFIG.group_behind_idle_ms - 1)
    assert state.watermark_ms == local_ms("2026-11-05 09:00")  # still held
    state.clock.refresh(NOW + CONFIG.group_behind_idle_ms + CONFIG.source_idle_ms + 1)
    assert state.watermark_ms == local_ms("2026-11-07 09:00")  # released, not 3 minutes on


def test_flushed_state_loads_back_equal(small_plan: ScoringPlan) -> None:
    install = {"kind": "install", "status": "completed", "on_time": False, "delay_hours": 2.5}
    items = entries(
        small_plan,
        [
            event("install", **install),
            event("subscriber_base", active_subscribers=900),
            event("survey", touchpoint="care", nps=10),
        ],
    )
    state = PartitionState(3, CONFIG)
    state.apply(items, NOW)
    table = dict(flush(state))
    assert list(table)[-1] == "3/c"  # the control value comes last
    loaded = load_state(3, CONFIG, table.items(), NOW)  # type: ignore[arg-type]
    assert snapshot(loaded) == snapshot(state)
    assert loaded.watermark_ms == state.watermark_ms
    assert loaded.bases_at("HPG", NOW) == {"mobile": 900.0}
    # After a changelog recovery Faust hands the values back already JSON-decoded.
    decoded = {k: orjson.loads(v) for k, v in table.items() if v is not None}
    assert snapshot(load_state(3, CONFIG, decoded.items(), NOW)) == snapshot(state)
    loaded.apply(items, NOW)  # everything was flushed: all of it is a replay
    assert loaded.counts.replayed == 3 and snapshot(loaded) == snapshot(state)


def test_a_flush_cut_after_the_slices_value_replays_no_slice_entry_twice(
    small_plan: ScoringPlan,
) -> None:
    """A unit's slices are one value, guarded by the unit's offsets when it was written: a
    crash after it but before the control value replays the envelope into the calendar
    windows the crash left behind, not into the slices again."""
    install = {"kind": "install", "status": "completed", "on_time": True, "delay_hours": 1.0}
    items = entries(
        small_plan,
        [event("install", f"2026-11-05 10:{minute:02d}", **install) for minute in range(6)],
        sources=2,
    )
    first, second = items[:3], items[3:]
    reference = PartitionState(0, CONFIG)
    reference.apply(first, NOW)
    reference.apply(second, NOW)

    state = PartitionState(0, CONFIG)
    state.apply(first, NOW)
    table = {k: v for k, v in flush(state) if v is not None}
    state.apply(second, NOW)
    writes = flush(state)
    cut = [k for k, _ in writes].index("0/s/HPG") + 1  # the slices are in, the control not
    table.update((k, v) for k, v in writes[:cut] if v is not None)
    assert any(k.startswith("0/w/HPG/day") for k, _ in writes[:cut])
    recovered = load_state(0, CONFIG, table.items(), NOW)
    recovered.apply(second, NOW)  # its envelope was not acknowledged: delivered again
    assert snapshot(recovered) == snapshot(reference)
    assert len(recovered.units["HPG"].slices) == 6


@settings(max_examples=120, deadline=None)
@given(event_lists(max_size=40), st.data())
def test_a_crash_anywhere_loses_nothing_and_counts_nothing_twice(
    small_plan: ScoringPlan, events: list[dict[str, Any]], data: st.DataObject
) -> None:
    """At-least-once delivery + idempotent state: flush after some envelopes, acknowledge
    (commit) what the flush persisted, crash after an arbitrary prefix of the changelog
    writes, reload, replay from the committed envelope: same state as without the crash."""
    # a few re-sent events (same id) so duplicates are in play
    events = events + [dict(e) for e in events[: data.draw(st.integers(0, 3))]]
    size = data.draw(st.integers(1, 6))
    batches = envelopes(entries(small_plan, events), size)
    reference = PartitionState(0, CONFIG)
    for batch in batches:
        reference.apply(batch, NOW)

    state = PartitionState(0, CONFIG)
    changelog: list[tuple[str, bytes | None]] = []
    flushes: list[tuple[int, int]] = []  # (changelog length after it, envelopes committed)
    commit = 0
    for i, batch in enumerate(batches):
        state.apply(batch, NOW)
        if data.draw(st.booleans()):
            changelog.extend(flush(state))
            commit = data.draw(st.integers(commit, i + 1))  # a commit may lag its flush
            flushes.append((len(changelog), commit))
    crash_at = data.draw(st.integers(0, len(changelog)))
    # Offsets are committed only once the flush's writes are acknowledged.
    committed = max((c for end, c in flushes if end <= crash_at), default=0)
    table: dict[str, bytes] = {}
    for key, value in changelog[:crash_at]:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    recovered = load_state(0, CONFIG, table.items(), NOW)
    for batch in batches[committed:]:
        recovered.apply(batch, NOW)
    assert snapshot(recovered) == snapshot(reference)


def sent_alerts(state: PartitionState) -> list[dict[str, Any]]:
    """An emit's alert records, their send acknowledged at once."""
    owed = state.outbox.take()
    if owed:
        state.outbox.confirm(owed[-1][0])
    return [r for _, kind, r in owed if kind == "alert"]


def calendar_snapshot(state: PartitionState) -> dict[Any, Any]:
    full = snapshot(state)
    full["windows"] = {k: v for k, v in full["windows"].items() if k[1] != "slice"}
    return full


@settings(max_examples=80, deadline=None)
@given(event_lists(max_size=40), st.data())
def test_a_crash_on_the_service_flush_path_keeps_windows_and_alert_outbox(
    small_plan: ScoringPlan, events: list[dict[str, Any]], data: st.DataObject
) -> None:
    """The service's flush path (alerts stepped, old slices dropped, then the writes):
    after a crash anywhere the calendar windows and counts equal a run without the crash,
    and every alert record of the reference is published (at least once) from the outbox."""
    from streams.scoring.alerting import AlertEvaluator

    evaluator = AlertEvaluator(small_plan, CONFIG.rolling_span_ms, CONFIG.rolling_slice_ms)

    def flush_path(state: PartitionState) -> list[tuple[str, bytes | None]]:
        """What the service does at a flush: alerts stepped, old slices gone, writes."""
        state.evaluate_alerts(evaluator)
        expire_slices(state)
        return flush(state)

    def alert_ids(records: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
        return {(a["alert_id"], a["state"], a["started_at_ms"]) for a in records}

    size = data.draw(st.integers(1, 6))
    batches = envelopes(entries(small_plan, events), size)
    reference = PartitionState(0, CONFIG)
    for batch in batches:
        reference.apply(batch, NOW)
    flush_path(reference)
    expected_alerts = alert_ids(sent_alerts(reference))

    state = PartitionState(0, CONFIG)
    changelog: list[tuple[str, bytes | None]] = []
    flushes: list[tuple[int, int]] = []
    in_flight: list[tuple[int, list[dict[str, Any]]]] = []  # sends of the outbox not acked
    acked: list[tuple[int, list[dict[str, Any]]]] = []  # (changelog length then, records)
    for i, batch in enumerate(batches):
        state.apply(batch, NOW)
        if data.draw(st.booleans()):
            changelog.extend(flush_path(state))
            flushes.append((len(changelog), i + 1))
        if data.draw(st.booleans()):  # an emit takes the outbox: its send is on its way
            owed = state.outbox.take()
            if owed:
                in_flight.append((owed[-1][0], [r for _, k, r in owed if k == "alert"]))
        if in_flight and data.draw(st.booleans()):  # the broker acknowledges a send
            seq, records = in_flight.pop(0)
            acked.append((len(changelog), records))
            state.outbox.confirm(seq)
    # a crash right after the changelog's `crash_at`-th write: what was acked by then is out
    crash_at = data.draw(st.integers(0, len(changelog)))
    published = [r for at, records in acked if at <= crash_at for r in records]
    committed = max((c for end, c in flushes if end <= crash_at), default=0)
    table: dict[str, bytes] = {}
    for key, value in changelog[:crash_at]:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    recovered = load_state(0, CONFIG, table.items(), NOW)
    for batch in batches[committed:]:
        recovered.apply(batch, NOW)
    flush_path(recovered)
    published += sent_alerts(recovered)
    assert calendar_snapshot(recovered) == calendar_snapshot(reference)
    # every transition is published at least once, whenever the crash came
    assert alert_ids(published) >= expected_alerts
