"""A partition's state in the changelog-backed table: what a flush writes, and the state
rebuilt from it after a recovery (keys: `streams.scoring.keys`; values: JSON with readable
field names).

Exactly-once on an at-least-once stream comes from idempotent state (the embedded broker has
no transactions; Kafka transactions would also not cover our own replays):

- Per unit, a *guard*: the highest source offset applied per source partition. An entry at
  or below it is a replay (an envelope re-read after a crash, or re-produced by the ingest
  after its own restart) and is skipped whole.
- Every stored value (window, slices, subscriber bases) carries its own guard too, so a
  flush that was cut half-way is completed on replay without counting anything twice.
- The control value (watermark, guards, counters, outbox) is always written last in a
  flush. The changelog of a partition keeps write order, so whatever survives a crash is a
  prefix: the control never claims more than the windows hold.
- Duplicates (same `event_id`, other source coordinates) are recognised over the lateness
  horizon through a seen-id index persisted in write-once chunks.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from typing import Any, Final

import orjson

from streams.core.accumulators import signed_add
from streams.core.alerts import AlertState
from streams.scoring.fold import PartitionState
from streams.scoring.keys import bases_key, control_key, seen_key, slices_key, window_key
from streams.scoring.outbox import Outbox
from streams.scoring.programme_alerts import ProgrammeMachine
from streams.scoring.rolling import UnitRolling
from streams.scoring.state import Counts, FoldConfig, UnitState, Window

Writes = list[tuple[str, bytes | None]]  # table key, value (None: a tombstone)
_EVENT_ID, _EVENT_TIME = itemgetter(0), itemgetter(3)  # of a seen-id row
SEEN_CHUNK_IDS: Final = 2_000  # ~120 KB of JSON per seen-id chunk at most


def flush(state: PartitionState) -> Writes:
    """Table writes since the last flush, in a safe order: the control value last."""
    p = state.partition
    writes: Writes = []
    for key, window in state.windows.items():
        if window.unsaved:
            window.unsaved = False
            writes.append((window_key(p, key), dump_window(window)))
            window.persisted = True
    for unit, unit_state in state.units.items():
        if unit_state.slices_unsaved:
            writes.append((slices_key(p, unit), dump_slices(unit_state)))
            unit_state.slices_unsaved = False
        # seen ids in chunks of bounded size (a fast replay brings many per flush; a
        # changelog message must stay well under the broker's size limit)
        for first in range(0, len(unit_state.fresh), SEEN_CHUNK_IDS):
            rows = unit_state.fresh[first : first + SEEN_CHUNK_IDS]
            chunk = unit_state.next_chunk
            unit_state.next_chunk += 1
            unit_state.chunks[chunk] = (max(map(_EVENT_TIME, rows)), list(map(_EVENT_ID, rows)))
            writes.append((seen_key(p, unit, chunk), orjson.dumps(rows)))
        unit_state.fresh = []
        if unit_state.bases_unsaved:
            bases = {
                "snapshots": unit_state.bases.snapshots(unit),
                "programmes": unit_state.programmes.snapshots(),
                "guard": unit_state.base_guard,
            }
            writes.append((bases_key(p, unit), orjson.dumps(bases)))
            unit_state.bases_unsaved = False
    writes.extend((key, None) for key in sorted(state.deleted))
    state.deleted.clear()
    writes.append((control_key(p), dump_control(state)))
    return writes


def dump_window(window: Window) -> bytes:
    return orjson.dumps(
        {
            "accumulators": [[k, *v] for k, v in window.accumulators.items()],
            "guard": window.guard,
            "revision": window.revision,
            "final": window.final,
            "newest_ingest_ms": window.newest_ingest_ms,
            "changed": window.changed,
        }
    )


def load_window(value: Any) -> Window:
    data = _decoded(value)
    return Window(
        accumulators={row[0]: row[1:] for row in data["accumulators"]},
        guard=data["guard"],
        revision=data["revision"],
        final=data["final"],
        newest_ingest_ms=data["newest_ingest_ms"],
        changed=data["changed"],
        unsaved=False,
        persisted=True,
    )


def dump_slices(unit_state: UnitState) -> bytes:
    """A unit's rolling slices in one value (one changelog message per unit and flush, not
    one per slice and a tombstone when it leaves: a catch-up crosses a slice a minute).
    Their guard is the unit's: every entry the unit applied is in a slice it still holds,
    or in one that left the rolling window, which nothing reads again."""
    return orjson.dumps(
        {
            "guard": unit_state.guard,
            "slices": [
                [start, [[k, *v] for k, v in accumulators.items()]]
                for start, accumulators in unit_state.slices.items()
            ],
        }
    )


def dump_control(state: PartitionState) -> bytes:
    counts = state.counts
    return orjson.dumps(
        {
            "watermark_ms": state.watermark_ms,
            "sources": {
                source: [newest, holding]
                for source, (newest, _, holding) in state.clock.sources.items()
            },
            "counts": {
                "scored": counts.scored,
                "duplicates": counts.duplicates,
                "late": counts.late,
                "replayed": counts.replayed,
                "unit_cap": counts.unit_cap,
            },
            "units": {
                unit: {
                    "guard": s.guard,
                    "next_chunk": s.next_chunk,
                    "alerts": _dump_rolling(s.rolling),
                    "programme_alerts": [
                        [*key, *m.dump()] for key, m in s.programme_alerts.items()
                    ],
                    "baselines": [
                        [kind, start, [[*ref, points] for ref, points in kpis.items()]]
                        for (kind, start), kpis in s.baselines.items()
                    ],
                }
                for unit, s in state.units.items()
            },
            "outbox": state.outbox.dump(),
            "refused": state.refused,
            "envelope_offset": state.envelope_offset,
        }
    )


def _dump_rolling(rolling: UnitRolling | None) -> Any:
    if rolling is None:
        return None
    machines = {
        str(i): [m.state, m.pending_since_ms, m.started_at_ms, m.acknowledged_by]
        for i, m in rolling.machines.items()
    }
    return {"boundary": rolling.boundary, "machines": machines}


def _load_rolling(data: Any) -> UnitRolling | None:
    if data is None:
        return None
    machines = {int(i): AlertState(*m) for i, m in data["machines"].items()}
    return UnitRolling(boundary=data["boundary"], machines=machines)


def load_state(
    partition: int, config: FoldConfig, items: Iterable[tuple[str, Any]], now_ms: int
) -> PartitionState:
    """Rebuild a partition's state from the table's values (after a recovery)."""
    state = PartitionState(partition, config)
    prefix = f"{partition}/"
    chunks: list[tuple[str, int, Any]] = []
    bases: list[tuple[str, Any]] = []
    slice_sets: list[tuple[str, Any]] = []
    for key, value in items:
        if not key.startswith(prefix) or value is None:
            continue
        parts = key.split("/")
        if parts[1] == "c":
            _load_control(state, _decoded(value), now_ms)
        elif parts[1] == "w":
            state.windows[(parts[2], parts[3], int(parts[4]))] = load_window(value)
        elif parts[1] == "s":
            slice_sets.append((parts[2], value))
        elif parts[1] == "d":
            chunks.append((parts[2], int(parts[3]), value))
        elif parts[1] == "b":
            bases.append((parts[2], value))
    units = state.units
    for unit, value in slice_sets:
        data = _decoded(value)
        unit_state = units.setdefault(unit, UnitState())
        for start, rows in data["slices"]:
            unit_state.slices[start] = {row[0]: row[1:] for row in rows}
            unit_state.slice_guards[start] = dict(data["guard"])
    for unit, chunk, value in chunks:
        unit_state = units.setdefault(unit, UnitState())
        rows = _decoded(value)
        for event_id, source, offset, _ in rows:
            unit_state.seen[event_id] = (source, offset)
        unit_state.chunks[chunk] = (max(r[3] for r in rows), [r[0] for r in rows])
        # a chunk written after the control value: its number must not be reused
        unit_state.next_chunk = max(unit_state.next_chunk, chunk + 1)
    for unit, kind, start in state.windows:
        units.setdefault(unit, UnitState()).calendar.add((unit, kind, start))
    for unit_state in units.values():  # the rolling sums come back from the slices
        if unit_state.slices:
            unit_state.oldest_slice = min(unit_state.slices)
        rolling = unit_state.rolling
        if rolling is not None:
            span_start = rolling.boundary - config.rolling_span_ms
            for start, accumulators in unit_state.slices.items():
                if span_start <= start < rolling.boundary:
                    signed_add(rolling.sums, accumulators, 1.0)
    for unit, value in bases:
        unit_state = units.setdefault(unit, UnitState())
        data = _decoded(value)
        unit_state.base_guard = data["guard"]
        for service, snapshots in data["snapshots"].items():
            for time_ms, count in snapshots:
                unit_state.bases.add(unit, service, time_ms, count)
        unit_state.programmes.load(data["programmes"])
    return state


def _load_control(state: PartitionState, control: dict[str, Any], now_ms: int) -> None:
    state.watermark_ms = control["watermark_ms"]
    # sources count as active from the reload on
    state.clock.sources = {k: [v[0], now_ms, v[1]] for k, v in control["sources"].items()}
    state.counts = Counts(**control["counts"])
    state.outbox = Outbox.load(control["outbox"])
    state.refused = control["refused"]
    state.envelope_offset = control["envelope_offset"]
    for unit, data in control["units"].items():
        state.units[unit] = UnitState(
            guard=data["guard"],
            next_chunk=data["next_chunk"],
            rolling=_load_rolling(data["alerts"]),
            programme_alerts={
                (p, i): ProgrammeMachine(*machine) for p, i, *machine in data["programme_alerts"]
            },
            baselines={
                (kind, start): {(s, t, k): points for s, t, k, points in kpis}
                for kind, start, kpis in data["baselines"]
            },
        )


def _decoded(value: Any) -> Any:
    """A stored value: our JSON bytes, or (after a changelog recovery, where Faust applies
    its JSON codec to the raw bytes) the already decoded value."""
    return value if isinstance(value, (dict, list)) else orjson.loads(value)


def resume_position(control: Any) -> int:
    """Where a worker recovering a partition's state resumes its envelopes: right after the
    last envelope that state holds (0 without a control value). Faust resumes at the consumer
    group's committed offset, which the acks keep at or behind the persisted state; but a
    state whose newest writes were lost (a recovery that read the changelog's end while they
    were on their way) is older than that offset, and only this position re-delivers what it
    is missing."""
    if control is None:
        return 0
    return int(_decoded(control)["envelope_offset"]) + 1
