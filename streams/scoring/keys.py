"""The state table's keys: every value of a partition's state is under `<partition>/...`.

- `P/c`: the control value (watermark, sources, counts, the units' guards and alert
  machines, the outbox, unit-cap refusals, the last envelope's offset), written last;
- `P/w/UNIT/KIND/START`: a calendar window (quarters and years hold no accumulators);
- `P/s/UNIT`: a unit's rolling slices, in one value;
- `P/d/UNIT/N`: a unit's seen event ids, chunk N (written once);
- `P/b/UNIT`: a unit's subscriber-base snapshots.
"""

from __future__ import annotations

from streams.scoring.state import WindowKey


def control_key(partition: int) -> str:
    return f"{partition}/c"


def window_key(partition: int, key: WindowKey) -> str:
    unit, kind, start = key
    return f"{partition}/w/{unit}/{kind}/{start}"


def slices_key(partition: int, unit: str) -> str:
    return f"{partition}/s/{unit}"


def seen_key(partition: int, unit: str, chunk: int) -> str:
    return f"{partition}/d/{unit}/{chunk}"


def bases_key(partition: int, unit: str) -> str:
    return f"{partition}/b/{unit}"
