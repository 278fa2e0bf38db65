"""The scoring service without Kafka: envelopes in, flush writes and published records out."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from streams.contract.envelope import encode_envelope, entry_for
from streams.core.events import validate_event
from streams.core.plan import ScoringPlan
from streams.scoring.keys import control_key
from streams.scoring.persistence import load_state, resume_position
from streams.scoring.publish import NETWORK_HOLD_MS
from streams.scoring.service import EmitPace, ScoringService
from tests.factories import LOCAL, event, local_ms
from tests.scoring.test_fold import CONFIG


class RecordingOutputs:
    """Outputs that keep the records instead of encoding them."""

    def score_message(self, record: dict[str, Any], stamp_ms: int | None = None) -> Any:
        return ("score", record, None, stamp_ms)

    def programme_message(self, record: dict[str, Any], stamp_ms: int) -> Any:
        return ("programme", record, None, stamp_ms)

    def outbox_message(self, kind: str, record: dict[str, Any]) -> Any:
        return (kind, record, None, None)

    def tick_message(self, partition: int) -> Any:
        return ("tick", partition, None, None)

    def summary_message(self, summary: dict[str, Any]) -> Any:
        return ("summary", summary, None, None)

    def progress_message(self, watermarks_ms: dict[int, int]) -> Any:
        return ("progress", watermarks_ms, None, None)

    def tombstones(self, keys: Any) -> list[Any]:
        return [("tombstone", key, level, None) for level, key in keys]


class Envelope:
    acked = 0

    def ack(self) -> bool:
        Envelope.acked += 1
        return True


class Feeder:
    """Envelopes of one source, with increasing offsets, into partition 0 of a service."""

    def __init__(self, plan: ScoringPlan, service: ScoringService) -> None:
        self.plan = plan
        self.service = service
        self.offset = 0
        self.envelope_offset = -1
        self.sent: list[tuple[int, bytes]] = []
        self.table: dict[str, bytes | None] = {}

    def write(self, key: str, value: bytes | None) -> None:
        self.table[key] = value

    def send(self, times: list[str], backlog: bool, at: int | None = None) -> None:
        """An envelope of install events at these local times; `at`: its envelope offset
        (default: the next one)."""
        rows = []
        for when in times:
            on_time = self.offset % 2 == 0  # every event moves a score
            e = validate_event(
                event(
                    "install",
                    when,
                    kind="install",
                    status="completed",
                    on_time=on_time,
                    delay_hours=1.0,
                )
            )
            rows.append(entry_for(e, self.plan.contributions(e), "in", 0, self.offset, 1))
            self.offset += 1
        value = encode_envelope(rows)
        if at is None:
            at = self.envelope_offset = self.envelope_offset + 1
        load = lambda: list(self.table.items())  # noqa: E731
        self.service.on_envelope(0, value, Envelope(), load, self.write, backlog=backlog, offset=at)
        self.sent.append((at, value))

    def redeliver(self, at: int) -> None:
        value = dict(self.sent)[at]
        load = lambda: list(self.table.items())  # noqa: E731
        self.service.on_envelope(0, value, Envelope(), load, self.write, offset=at)


def service_for(plan: ScoringPlan, flush_interval_s: float = 60, **options: Any) -> ScoringService:
    return ScoringService(
        plan,
        CONFIG,
        RecordingOutputs(),  # type: ignore[arg-type]
        flush_interval_s=flush_interval_s,
        idle_advance_s=600,
        **options,
    )


def published_windows(messages: list[Any]) -> set[tuple[str, int]]:
    return {(m[1]["window"], m[1]["window_start_ms"]) for m in messages if m[0] == "score"}


def test_a_backlog_publishes_closing_windows_at_once_and_open_ones_when_it_ends(
    small_plan: ScoringPlan,
) -> None:
    service = service_for(small_plan)
    feeder = Feeder(small_plan, service)
    day = {d: day_start(f"2026-11-0{d}") for d in (4, 5, 6)}
    month = local_ms("2026-11-01 00:00")
    merged = {("quarter", local_ms("2026-10-01 00:00")), ("year", local_ms("2026-01-01 00:00"))}

    feeder.send(["2026-11-04 10:00", "2026-11-05 10:00"], backlog=True)
    first = published_windows(service.emit().messages)  # the first publication of a partition
    assert first == {("day", day[4]), ("day", day[5]), ("month", month), *merged}

    feeder.send(["2026-11-05 11:00", "2026-11-06 10:00"], backlog=True)
    during = published_windows(service.emit().messages)
    # day 5 closed (the watermark passed its end plus the lateness): out at once, final
    assert during == {("day", day[5])}

    feeder.send(["2026-11-06 11:00"], backlog=False)
    after = published_windows(service.emit().messages)
    assert after == {("day", day[6]), ("month", month), *merged}  # quarter, year: their month


def test_without_a_backlog_every_changed_window_is_published_at_each_emit(
    small_plan: ScoringPlan,
) -> None:
    service = service_for(small_plan)
    feeder = Feeder(small_plan, service)
    feeder.send(["2026-11-05 10:00"], backlog=False)
    service.emit()
    feeder.send(["2026-11-05 10:30"], backlog=False)
    month = local_ms("2026-11-01 00:00")
    assert published_windows(service.emit().messages) == {
        ("day", day_start("2026-11-05")),
        ("month", month),
        ("quarter", local_ms("2026-10-01 00:00")),
        ("year", local_ms("2026-01-01 00:00")),
    }


def day_start(date: str) -> int:
    return local_ms(f"{date} 00:00")


def test_a_live_stream_with_a_momentary_backlog_still_publishes_at_each_emit(
    small_plan: ScoringPlan,
) -> None:
    service = service_for(small_plan)
    feeder = Feeder(small_plan, service)
    now = datetime.now(LOCAL)
    minutes_ago = [(now - timedelta(minutes=m)).strftime("%Y-%m-%d %H:%M") for m in (3, 2, 1)]
    feeder.send(minutes_ago[:1], backlog=True)
    service.emit()
    feeder.send(minutes_ago[1:], backlog=True)  # event time near the clock: live, not history
    assert ("day", day_start(now.strftime("%Y-%m-%d"))) in published_windows(
        service.emit().messages
    )


def test_an_envelope_delivered_again_changes_nothing_and_counts_as_replayed(
    small_plan: ScoringPlan,
) -> None:
    service = service_for(small_plan)
    feeder = Feeder(small_plan, service)
    feeder.send(["2026-11-05 10:00", "2026-11-05 10:01"], backlog=False)
    feeder.send(["2026-11-05 10:02"], backlog=False)
    feeder.redeliver(0)
    counts = service.counts()
    assert (counts.scored, counts.replayed) == (3, 2)


def test_a_recovered_state_resumes_its_envelopes_right_after_the_last_one_it_holds(
    small_plan: ScoringPlan,
) -> None:
    service = service_for(small_plan, flush_interval_s=0)  # every envelope is flushed
    feeder = Feeder(small_plan, service)
    assert resume_position(feeder.table.get(control_key(0))) == 0  # nothing folded yet
    feeder.send(["2026-11-05 10:00"], backlog=False)
    feeder.send(["2026-11-05 10:01"], backlog=False, at=7)
    assert resume_position(feeder.table[control_key(0)]) == 8
    reloaded = load_state(0, CONFIG, list(feeder.table.items()), 0)
    assert reloaded.envelope_offset == 7


def test_the_next_expected_envelope_follows_the_last_one_folded(small_plan: ScoringPlan) -> None:
    service = service_for(small_plan)
    feeder = Feeder(small_plan, service)
    load = lambda: list(feeder.table.items())  # noqa: E731
    assert service.next_offset(0, load) is None  # nothing folded: any offset is welcome
    feeder.send(["2026-11-05 10:00"], backlog=False, at=4)
    feeder.send(["2026-11-05 10:01"], backlog=False, at=5)
    feeder.redeliver(4)
    assert service.next_offset(0, load) == 6


def test_a_backlog_ends_when_no_envelope_came_for_a_flush_interval(
    small_plan: ScoringPlan,
) -> None:
    # the last envelope of a replay may still say "behind": silence ends the backlog all the
    # same, and the open windows go out
    service = service_for(small_plan)
    feeder = Feeder(small_plan, service)
    feeder.send(["2026-11-04 10:00"], backlog=True)
    service.emit()
    feeder.send(["2026-11-04 10:30"], backlog=True)
    assert published_windows(service.emit().messages) == set()
    service.partitions[0].last_envelope -= 61  # a flush interval of silence
    assert ("day", day_start("2026-11-04")) in published_windows(service.emit().messages)


def test_a_publication_longer_than_a_flush_interval_is_not_silence_of_the_input(
    small_plan: ScoringPlan, monkeypatch: Any
) -> None:
    # the fold takes no envelope while a catch-up's publication holds the loop: counted as
    # silence, it ended the catch-up and every open window went out at each emit after it
    clock = Clock(monkeypatch)
    service = service_for(small_plan, flush_interval_s=1)
    feeder = Feeder(small_plan, service)
    publish = service.publisher.publish

    def slow_publish(*args: Any, **kwargs: Any) -> Any:
        clock.pass_s(2)
        return publish(*args, **kwargs)

    monkeypatch.setattr(service.publisher, "publish", slow_publish)
    feeder.send(["2026-11-04 10:00"], backlog=True)
    service.emit()
    feeder.send(["2026-11-04 10:30"], backlog=True)
    assert published_windows(service.emit().messages) == set()  # day 4 is open
    assert service.catching_up()
    assert published_windows(service.emit().messages) == set()  # still catching up
    clock.pass_s(1.5)  # real silence
    assert not service.catching_up()
    assert ("day", day_start("2026-11-04")) in published_windows(service.emit().messages)


def test_the_service_is_catching_up_only_while_a_backlog_keeps_arriving(
    small_plan: ScoringPlan,
) -> None:
    service = service_for(small_plan, flush_interval_s=60)
    assert not service.catching_up()  # no partition yet
    feeder = Feeder(small_plan, service)
    feeder.send(["2026-11-05 10:00"], backlog=False)
    assert not service.catching_up()  # a live stream the fold keeps up with
    feeder.send(["2026-11-05 10:01"], backlog=True)
    assert service.catching_up()  # history, with more envelopes waiting
    service.partitions[0].last_envelope -= 61  # a flush interval without envelopes
    assert not service.catching_up()


def test_a_live_stream_with_records_left_after_each_batch_is_not_catching_up(
    small_plan: ScoringPlan,
) -> None:
    # at a steady live rate some records are always left to read after a batch: that is
    # not history to catch up on, and publication must not be spaced out for it
    service = service_for(small_plan, flush_interval_s=60)
    now = datetime.now(LOCAL).replace(tzinfo=None)
    times = [(now - timedelta(seconds=s)).strftime("%Y-%m-%d %H:%M:%S") for s in (2, 1)]
    Feeder(small_plan, service).send(times, backlog=True)
    assert not service.catching_up()


def test_a_catch_up_spaces_publication_to_four_times_its_cost() -> None:
    pace = EmitPace(1.0)
    assert pace.due(100.0, catching_up=True)
    pace.published(100.0, 103.0, catching_up=True)  # 3 s of publication
    assert not pace.due(105.0, catching_up=True)
    assert pace.due(111.5, catching_up=True)  # 4 x 3 s from its start, half an interval early


def test_a_publication_postponed_by_the_catch_up_goes_out_when_the_catch_up_ends() -> None:
    pace = EmitPace(1.0)
    pace.published(100.0, 104.0, catching_up=True)
    assert not pace.due(105.0, catching_up=True)
    assert pace.due(105.0, catching_up=False)  # the last envelope was folded: publish now


def test_a_catch_up_ending_before_any_tick_postponed_publishes_at_the_next_tick() -> None:
    """The fold's last envelope came while a spaced-out publication was being sent: no tick
    of the catch-up was left to postpone the next one, which must not wait out the spacing."""
    pace = EmitPace(1.0, tick_s=0.25)
    pace.published(100.0, 101.0, catching_up=True)  # next one 4 s later
    assert not pace.due(101.25, catching_up=False, replaying=True)  # between two envelopes
    assert pace.due(101.25, catching_up=False, replaying=False)  # no backlog left anywhere
    pace.published(101.25, 101.5, catching_up=False)
    assert not pace.due(101.75, catching_up=False, replaying=False)  # live pace again


def test_a_live_stream_publishes_at_every_interval() -> None:
    pace = EmitPace(1.0)
    pace.published(100.0, 100.8, catching_up=False)
    assert pace.due(101.0, catching_up=False)
    assert pace.due(101.0, catching_up=True)


def test_a_tick_finer_than_the_interval_publishes_a_live_stream_once_per_interval() -> None:
    pace = EmitPace(1.0, tick_s=0.25)
    assert pace.due(100.0, catching_up=False)
    pace.published(100.0, 100.1, catching_up=False)
    assert not pace.due(100.25, catching_up=False)
    assert not pace.due(100.5, catching_up=False)
    assert pace.due(100.875, catching_up=False)


def test_a_tick_finer_than_the_interval_ends_a_postponement_at_the_next_tick() -> None:
    pace = EmitPace(1.0, tick_s=0.25)
    pace.published(100.0, 104.0, catching_up=True)  # next one 16 s later
    assert not pace.due(104.25, catching_up=True)
    assert pace.due(104.5, catching_up=False)  # the catch-up ended a tick ago
    pace.published(104.5, 104.7, catching_up=False)
    assert not pace.due(104.75, catching_up=False)  # nothing postponed any more


def test_an_emit_sends_all_its_partitions_watermarks_in_one_message_after_their_summaries(
    small_plan: ScoringPlan,
) -> None:
    service = service_for(small_plan)
    install = {"kind": "install", "status": "completed", "on_time": True, "delay_hours": 1.0}
    for partition in (0, 1):
        e = validate_event(event("install", "2026-11-05 10:00", unit=f"U{partition}", **install))
        value = encode_envelope([entry_for(e, small_plan.contributions(e), "in", partition, 0, 1)])
        service.on_envelope(partition, value, Envelope(), list, lambda k, v: None, offset=0)
    messages = service.emit().messages
    kinds = [m[0] for m in messages]
    assert kinds.count("summary") == 8  # a day, month, quarter and year window per unit
    assert kinds.count("progress") == 1
    (progress,) = [m[1] for m in messages if m[0] == "progress"]
    assert set(progress) == {0, 1}
    assert kinds.index("progress") > max(i for i, k in enumerate(kinds) if k == "summary")
    watermarks = [m[1] for m in service.emit().messages if m[0] == "progress"]
    assert watermarks == []  # no watermark moved since


def test_latency_is_observed_once_per_window_publication_when_it_is_built(
    small_plan: ScoringPlan,
) -> None:
    observed: list[float] = []
    service = service_for(small_plan, observe_latency=observed.append)
    feeder = Feeder(small_plan, service)
    feeder.send(["2026-11-05 10:00"], backlog=False)
    published = published_windows(service.emit().messages)
    assert len(published) == 4  # the day, the month, and the quarter and year they make up
    assert len(observed) == 2  # the windows the events went to (day, month), once each
    service.emit()  # nothing new: no publication, no observation (scrapes play no part)
    assert len(observed) == 2
    assert all(seconds > 0 for seconds in observed)  # the entries' ingest time is 1 ms


def test_windows_older_than_the_retention_are_tombstoned_when_dropped(
    small_plan: ScoringPlan,
) -> None:
    service = service_for(small_plan, flush_interval_s=0, retention_ms=3 * 86_400_000)
    feeder = Feeder(small_plan, service)
    feeder.send(["2026-11-02 10:00"], backlog=False)
    published = {m[1]["window_start_ms"]: m for m in service.emit().messages if m[0] == "score"}
    day2 = day_start("2026-11-02")
    assert day2 in published
    feeder.send(["2026-11-03 10:00"], backlog=False)
    service.emit()
    # day 2 is dropped once day 3 is final too; by then it is over 3 days old
    feeder.send(["2026-11-09 10:00"], backlog=False)
    messages = service.emit().messages
    gone = [m for m in messages if m[0] == "tombstone"]
    assert gone and all(b"/day/2026-11-02T00:00:00+07:00" in m[1] for m in gone)
    assert {m[2] for m in gone} == {"kpi", "touchpoint", "service", "unit"}
    # without a retention nothing is tombstoned
    keep = service_for(small_plan, flush_interval_s=0)
    feeder = Feeder(small_plan, keep)
    for when in ("2026-11-02 10:00", "2026-11-03 10:00", "2026-11-09 10:00"):
        feeder.send([when], backlog=False)
        assert not [m for m in keep.emit().messages if m[0] == "tombstone"]


def test_a_closed_window_of_a_programme_unit_waits_for_the_network_means_before_it_goes(
    monkeypatch: Any,
) -> None:
    """Catching up, a day closes and expires within an emit or two, before the network
    level answered with the means its programme records' effect reads: it is held for
    NETWORK_HOLD_MS after its last publication, then dropped as before."""
    from streams.core.catalog import load_catalog
    from streams.scoring import publish

    plan = ScoringPlan(load_catalog())  # install_recovery_hpg covers HPG from 1 November
    service = service_for(plan, flush_interval_s=0)
    feeder = Feeder(plan, service)
    for when in ("2026-11-02 10:00", "2026-11-03 10:00", "2026-11-09 10:00"):
        feeder.send([when], backlog=False)
        service.emit()
    state = service.partitions[0].state
    day2 = ("HPG", "day", local_ms("2026-11-02 00:00"))
    assert state.windows[day2].final
    monkeypatch.setattr(publish, "NETWORK_HOLD_MS", 0)
    service.emit()
    assert day2 not in state.windows


class Clock:
    """The service's wall and monotonic clocks, moved by hand."""

    def __init__(self, monkeypatch: Any) -> None:
        self.ms = local_ms("2026-11-05 12:30")
        monkeypatch.setattr("streams.scoring.service._wall_ms", lambda: self.ms)
        monkeypatch.setattr("streams.scoring.service.time.monotonic", lambda: self.ms / 1000)

    def pass_s(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


def install_envelope(plan: ScoringPlan, topic: str, offset: int, when: str, **flags: Any) -> bytes:
    e = validate_event(event("install", when, kind="install", status="completed", on_time=True))
    return encode_envelope([entry_for(e, plan.contributions(e), topic, 0, offset, 1)], **flags)


def outage_then_a_held_sources_event(
    small_plan: ScoringPlan, monkeypatch: Any, reachable_during: bool
) -> ScoringService:
    """Two sources: `slow` still has records on the broker at 09:00, `fast` is at 12:00.
    Then 400 s in which the broker does not answer (or, `reachable_during`, answers but
    nothing comes), emitting every 5 s; then slow's next event, 09:10."""
    clock = Clock(monkeypatch)
    broker_up = [True]
    service = service_for(small_plan, reachable=lambda: broker_up[0])
    table: dict[str, bytes | None] = {}
    load = lambda: list(table.items())  # noqa: E731
    write = table.__setitem__

    def deliver(value: bytes, at: int) -> None:
        service.on_envelope(0, value, Envelope(), load, write, offset=at)

    deliver(install_envelope(small_plan, "slow", 0, "2026-11-05 09:00", behind=["slow#0"]), 0)
    deliver(install_envelope(small_plan, "fast", 0, "2026-11-05 12:00"), 1)
    service.emit()
    assert service.partitions[0].state.watermark_ms == local_ms("2026-11-05 09:00")
    broker_up[0] = reachable_during
    for _ in range(80):  # 400 s: longer than a held source's 180 s
        clock.pass_s(5)
        service.emit()
    broker_up[0] = True
    clock.pass_s(5)
    deliver(install_envelope(small_plan, "slow", 1, "2026-11-05 09:10", behind=["slow#0"]), 2)
    return service


def test_a_broker_outage_does_not_release_a_held_source_nor_move_the_watermark(
    small_plan: ScoringPlan, monkeypatch: Any
) -> None:
    # Without the pause, 180 s after slow's last envelope no source is active, the watermark
    # takes fast's 12:00 and slow's 09:10 event is late (12:00 - 10 min lateness > 09:10).
    service = outage_then_a_held_sources_event(small_plan, monkeypatch, reachable_during=False)
    state = service.partitions[0].state
    assert state.counts.late == 0
    # slow held it through the outage; now it is the only source delivering
    assert state.watermark_ms == local_ms("2026-11-05 09:10")


def test_silence_with_the_broker_up_still_releases_a_held_source(
    small_plan: ScoringPlan, monkeypatch: Any
) -> None:
    # the same 400 s with the broker answering: slow's ingest went quiet for longer than a
    # rebalance lasts (its records may go to other partitions now), so it is released
    service = outage_then_a_held_sources_event(small_plan, monkeypatch, reachable_during=True)
    state = service.partitions[0].state
    assert state.counts.late == 1
    assert state.watermark_ms is not None
    assert state.watermark_ms >= local_ms("2026-11-05 12:00")


def day_rows(messages: list[Any], day: int) -> list[dict[str, Any]]:
    return [
        m[1]
        for m in messages
        if m[0] == "score" and m[1]["window"] == "day" and m[1]["window_start_ms"] == day
    ]


def test_a_closing_window_waits_for_its_network_means_and_goes_out_once_scored_once(
    small_plan: ScoringPlan, monkeypatch: Any
) -> None:
    Clock(monkeypatch)
    views: dict[tuple[str, int], Any] = {}
    service = service_for(small_plan, means=lambda kind, start: views.get((kind, start)))
    scored: list[Any] = []
    rows_of = service.publisher._rows
    monkeypatch.setattr(
        service.publisher,
        "_rows",
        lambda state, key, w: scored.append(key) or rows_of(state, key, w),
    )
    feeder = Feeder(small_plan, service)
    day = day_start("2026-11-04")
    feeder.send(["2026-11-04 10:00", "2026-11-05 10:00"], backlog=False)  # Nov 4 closes
    first = service.emit().messages
    assert day_rows(first, day) == []  # not yet: the network level has not answered
    assert [m[1]["start"] for m in first if m[0] == "summary" and m[1]["window"] == "day"] == [
        day,
        day_start("2026-11-05"),
    ]
    views[("day", day)] = (3.0, {})  # its network score arrives
    second = day_rows(service.emit().messages, day)
    assert second and all(r["final"] and r["revision"] == 1 for r in second)
    unit_row = next(r for r in second if r["level"] == "unit")
    assert unit_row["delta_network"] is not None
    assert day_rows(service.emit().messages, day) == []  # once
    # its summary, its final rows and Nov 5's delta_prev read the same scores: a closed
    # window no longer changes, and is scored once
    assert scored.count(("HPG", "day", day)) == 1


def test_a_closing_window_goes_out_without_network_means_that_do_not_come(
    small_plan: ScoringPlan, monkeypatch: Any
) -> None:
    clock = Clock(monkeypatch)
    service = service_for(small_plan, means=lambda kind, start: None)
    feeder = Feeder(small_plan, service)
    day = day_start("2026-11-04")
    feeder.send(["2026-11-04 10:00", "2026-11-05 10:00"], backlog=False)
    assert day_rows(service.emit().messages, day) == []
    clock.pass_s(NETWORK_HOLD_MS / 1000)
    rows = day_rows(service.emit().messages, day)
    assert rows and all(r["final"] and r["delta_network"] is None for r in rows)
