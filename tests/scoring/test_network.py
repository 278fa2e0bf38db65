"""The network level: final only once every partition's watermark passed the window, whatever
order the units' summaries arrive in (pure: no broker)."""

from __future__ import annotations

from typing import Any

from streams.core.plan import ScoringPlan
from streams.core.windows import LocalCalendar
from streams.scoring.network import NetworkPublication, NetworkState
from tests.factories import local_ms

LATENESS = 600_000
DAY = 86_400_000


def summary(unit: str, start: int, score: float, final: bool) -> dict[str, Any]:
    return {
        "unit": unit,
        "window": "day",
        "start": start,
        "window_start": LocalCalendar("Asia/Ho_Chi_Minh").isoformat(start),
        "final": final,
        "score": score,
        "rows": [],
    }


def progress(partition: int, watermark: int) -> dict[str, Any]:
    """A worker's progress message for one partition (JSON object keys are strings)."""
    return {"progress": {str(partition): watermark}}


def test_a_window_is_final_only_when_every_reporting_partition_passed_it(
    small_plan: ScoringPlan,
) -> None:
    network = NetworkState(small_plan, LATENESS)
    day = local_ms("2026-11-05 00:00")
    closed = day + DAY + LATENESS
    network.add(progress(1, day))  # partition 1 is still inside the day
    network.add(summary("A", day, 4.0, final=True))
    network.add(progress(0, closed))  # partition 0 (unit A) closed the day
    (record,) = records_of(network.publish(0))
    assert record["score"] == 4.0 and record["final"] is False
    network.add(summary("B", day, 2.0, final=True))  # unit B, on partition 1, arrives later
    network.add(progress(1, closed))
    (record,) = records_of(network.publish(0))
    assert record["final"] is True and record["revision"] == 2
    assert record["score"] == 3.0  # both units (equal weights)
    published = network.publish(0)  # nothing changed: nothing published
    assert (published.records, published.standings, published.views) == ([], [], [])


def test_final_windows_go_once_their_successor_is_final_and_late_summaries_are_ignored(
    small_plan: ScoringPlan,
) -> None:
    network = NetworkState(small_plan, LATENESS)
    day = local_ms("2026-11-05 00:00")
    network.add(summary("A", day, 4.0, final=True))
    network.add(summary("A", day + DAY, 3.0, final=True))
    network.add(progress(0, day + DAY))  # first day closed, not the second
    network.publish(0)
    assert network.expire() == []
    network.add(progress(0, day + 2 * DAY + LATENESS))
    (_, second) = records_of(network.publish(0))
    assert second["final"] is True and second["delta_prev"] == -1.0
    assert network.expire() == [f"day|{day}|A"]
    assert network.add(summary("B", day, 1.0, final=True)) is False
    assert ("day", day) not in network.windows


def test_one_progress_message_carries_every_partition_of_an_emit(
    small_plan: ScoringPlan,
) -> None:
    """A worker's emit sends its partitions' summaries, then all their watermarks at once:
    the network level, publishing as summaries arrive, never takes a window final on the
    first partition's watermark while the second's last summary of it is still to come."""
    from streams.scoring.network import decode_summary
    from streams.settings import Settings
    from streams.topics import Topics
    from streams.wire.messages import OutputMessages
    from streams.wire.outputs import OutputCodec
    from streams.wire.schemas import SchemaStore

    network = NetworkState(small_plan, LATENESS)
    day = local_ms("2026-11-05 00:00")
    closed = day + DAY + LATENESS
    outputs = OutputMessages(Topics(Settings()), OutputCodec(SchemaStore()))
    _, value, key, partition, _ = outputs.progress_message({0: closed, 1: day})
    assert partition == 0 and key == b"progress|0" and value is not None
    network.add(summary("A", day, 4.0, final=True))
    assert network.add(decode_summary(value))
    (record,) = records_of(network.publish(0))
    assert record["final"] is False  # partition 1 is still inside the day
    network.add(summary("B", day, 2.0, final=True))
    network.add(decode_summary(outputs.progress_message({0: closed, 1: closed})[1]))
    (record,) = records_of(network.publish(0))
    assert record["final"] is True and record["score"] == 3.0


def records_of(published: NetworkPublication) -> list[dict[str, Any]]:
    return [record for record, _ in published.records]


def test_standings_move_with_the_units_and_go_final_with_the_window(
    small_plan: ScoringPlan,
) -> None:
    network = NetworkState(small_plan, LATENESS)
    day = local_ms("2026-11-05 00:00")
    network.add(progress(0, day))
    network.add(summary("A", day, 4.0, final=False))
    network.add(summary("B", day, 3.0, final=False))
    first = {(r["service"], r["touchpoint"]): r for r, _ in network.publish(0).standings}
    units = first[(None, None)]["units"]
    assert [(e["unit"], e["rank"]) for e in units] == [("A", 1), ("B", 2)]
    assert first[(None, None)]["revision"] == 1 and not first[(None, None)]["final"]
    network.add(
        summary("A", day, 4.0, final=False)
    )  # A again, same score: the ranking did not move
    assert network.publish(0).standings == []
    network.add(summary("B", day, 4.5, final=False))  # B overtakes A
    (moved,) = [r for r, _ in network.publish(0).standings if r["service"] is None]
    assert [e["unit"] for e in moved["units"]] == ["B", "A"] and moved["revision"] == 2
    network.add(progress(0, day + DAY + LATENESS))  # the day closes: final, once more
    final = [r for r, _ in network.publish(0).standings]
    assert final and all(r["final"] for r in final)
    assert network.publish(0).standings == []


def test_a_summary_sent_again_unchanged_changes_nothing_and_a_republication_keeps_its_deltas(
    small_plan: ScoringPlan,
) -> None:
    """A unit window waiting for network means is republished with the same summary: the
    network level ignores it. When the summary did change after the previous window expired,
    the republication still ranks against that window (delta_prev, rank_prev)."""
    network = NetworkState(small_plan, LATENESS)
    day = local_ms("2026-11-05 00:00")
    for start, a, b in ((day, 4.0, 3.0), (day + DAY, 3.0, 4.0)):
        network.add(summary("A", start, a, final=True))
        network.add(summary("B", start, b, final=True))
    network.add(progress(0, day + 2 * DAY + LATENESS))
    network.publish(0)
    assert set(network.expire()) == {f"day|{day}|A", f"day|{day}|B"}
    assert network.add(summary("A", day + DAY, 3.0, final=True)) is False
    assert network.add(summary("B", day + DAY, 5.0, final=True))  # B's second day moved
    published = network.publish(0)
    (record,) = [r for r in records_of(published) if r["window_start_ms"] == day + DAY]
    assert record["delta_prev"] == 4.0 - 3.5
    (ranking,) = [r for r, _ in published.standings if r["service"] is None]
    assert [(e["unit"], e["rank"], e["rank_prev"]) for e in ranking["units"]] == [
        ("B", 1, 2),
        ("A", 2, 1),
    ]


def test_a_standings_key_no_unit_ranks_in_yet_goes_out_once_empty_as_in_the_batch(
    small_plan: ScoringPlan,
) -> None:
    """A day just begun has touchpoints no unit has a score for: `cemi score` gives their
    standings with no units, so the stream publishes them too (once, not at each publication)."""
    from streams.core.standings import standings_keys

    network = NetworkState(small_plan, LATENESS)
    day = local_ms("2026-11-05 00:00")
    network.add(progress(0, day))
    network.add(summary("A", day, 4.0, final=False))  # no rows: only the unit score ranks
    first = {(r["service"], r["touchpoint"]): r for r, _ in network.publish(0).standings}
    assert set(first) == set(standings_keys(small_plan))
    empty = [key for key, record in first.items() if record["units"] == []]
    assert empty and all(first[key]["revision"] == 1 for key in empty)
    network.add(summary("A", day, 4.5, final=False))
    moved = [(r["service"], r["touchpoint"]) for r, _ in network.publish(0).standings]
    assert moved == [(None, None)]  # the empty keys did not move
