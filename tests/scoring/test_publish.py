"""The publisher reads a partition's state and returns its decisions; the service applies them."""

from __future__ import annotations

import copy

from streams.core.plan import ScoringPlan
from tests.factories import local_ms
from tests.scoring.test_service import Feeder, service_for


def window_flags(state: object) -> dict[object, tuple[int, bool, bool, int]]:
    return {
        key: (w.revision, w.final, w.changed, w.newest_ingest_ms)
        for key, w in state.windows.items()  # type: ignore[attr-defined]
    }


def test_a_publication_changes_nothing_in_the_state_it_reads(small_plan: ScoringPlan) -> None:
    service = service_for(small_plan)
    feeder = Feeder(small_plan, service)
    feeder.send(["2026-11-05 10:00", "2026-11-05 11:00"], backlog=False)
    state = service.partitions[0].state
    before = window_flags(state)
    baselines = copy.deepcopy({u: s.baselines for u, s in state.units.items()})

    first = service.publisher.publish(state, now_ms=local_ms("2026-11-05 12:00"))

    assert window_flags(state) == before
    assert {u: s.baselines for u, s in state.units.items()} == baselines
    # every changed window is decided: out at revision 1, nothing left to publish
    assert {key for key, d in first.decisions.items() if d.revision == 1} == set(state.windows)
    assert not any(d.changed for d in first.decisions.values())


def test_the_service_applies_a_publications_decisions_to_the_state(
    small_plan: ScoringPlan,
) -> None:
    service = service_for(small_plan)
    feeder = Feeder(small_plan, service)
    feeder.send(["2026-11-05 10:00"], backlog=False)
    service.emit()
    state = service.partitions[0].state
    assert {w.revision for w in state.windows.values()} == {1}
    assert not any(w.changed for w in state.windows.values())

    feeder.send(["2026-11-05 10:30"], backlog=False)
    records = [m[1] for m in service.emit().messages if m[0] == "score"]
    assert {r["revision"] for r in records} == {2}
    assert {w.revision for w in state.windows.values()} == {2}
