"""What a partition publishes: score records of changed or closing windows (no Kafka).

A calendar window is re-scored when its state changed since the last publication (at most
once per emit interval: the caller coalesces), with `revision` + 1; of its rows only those
whose published fields changed go out (a month window's tree is ~300 rows, and most of them
do not move between two emits). When the watermark passes the window's end plus the allowed
lateness, every row goes out once more with `final: true`.

The publisher reads the partition's state and returns its decisions (`WindowDecision`);
the service writes them into the state. One module for the score rows, the programme
records and the network means they wait for: which windows go out depends on all three.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from streams.core.plan import ScoringPlan
from streams.core.programmes import ProgrammeDef, baseline_start, programme_records
from streams.core.records import MeanKey, Record, RecordKey, annotate, record_key, unit_rows
from streams.core.rollup import score_unit
from streams.core.windows import MERGED_KINDS, window_kind
from streams.scoring.fold import PartitionState
from streams.scoring.state import Window, WindowKey


@dataclass(frozen=True, slots=True)
class WindowDecision:
    """What a publication decided for one window. The publisher only reads the state; the
    service writes these into it (`ScoringService`), right after the publication."""

    changed: bool  # the window still has changes to publish
    revision: int | None = None  # the revision that went out (None: nothing went out)
    final: bool = False
    newest_ingest_ms: int = 0


BaselinePoints = dict[tuple[str, str, str], float | None]


@dataclass
class Publication:
    records: list[Record] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)  # each record's timestamp (event time)
    # programme records of the windows published (`streams.core.programmes`), each with its
    # record timestamp
    programmes: list[tuple[Record, int]] = field(default_factory=list)
    # per published calendar window: its unit-level summary (for the network level)
    summaries: list[dict[str, Any]] = field(default_factory=list)
    # per window published with new events: publication minus its newest event's ingest
    latencies_s: list[float] = field(default_factory=list)
    # per window the publication looked at: what it decided
    decisions: dict[WindowKey, WindowDecision] = field(default_factory=dict)
    # (unit, (kind, start)) of a window just before a programme's start -> the points then
    # of the KPIs the programme improves: the baseline its `effect` keeps
    baselines: dict[tuple[str, tuple[str, int]], BaselinePoints] = field(default_factory=dict)


def record_topic_key(record: Record) -> bytes:
    """The compacted topics' key: the latest value per level/key/window survives."""
    parts = (
        record["level"],
        record["unit"],
        record["service"],
        record["touchpoint"],
        record["kpi"],
    )
    prefix = _KEY_PREFIXES.get(parts)
    if prefix is None:  # the same rows come back in every window
        if len(_KEY_PREFIXES) >= _KEY_PREFIXES_MAX:
            _KEY_PREFIXES.clear()
        prefix = _KEY_PREFIXES[parts] = "/".join("-" if p is None else str(p) for p in parts)
    return f"{prefix}/{record['window']}/{record['window_start']}".encode()


_KEY_PREFIXES: dict[tuple[Any, ...], str] = {}
_KEY_PREFIXES_MAX = 100_000


def _summary(key: WindowKey, rows: list[Record], closed: bool, window_start: str) -> dict[str, Any]:
    """A unit window's scores for the network level (its means, network score, standings)."""
    unit, kind, start = key
    return {
        "unit": unit,
        "window": kind,
        "start": start,
        "window_start": window_start,
        "final": closed,
        "score": rows[0]["score"],  # unit_rows start with the unit row
        "rows": [
            [r["level"], r["service"], r["touchpoint"], r["kpi"], r["score"]] for r in rows[1:]
        ],
    }


def _signature(row: Record) -> tuple[Any, ...]:
    """What a row says, before the fields that say when and how often are added (rows are
    built field by field in one order, so equal values mean an unchanged row)."""
    return tuple(row.values())


# the network level answers a unit's summary within seconds (one round trip through the
# summaries and means topics): a final window with programme records waits this long
NETWORK_HOLD_MS: Final = 30_000
NetworkView = tuple[float | None, dict[MeanKey, float]]  # network score, means per key
MeansLookup = Callable[[str, int], NetworkView | None]


def _no_means(kind: str, start: int) -> NetworkView | None:
    return None


class Publisher:
    def __init__(self, plan: ScoringPlan, means: MeansLookup = _no_means) -> None:
        self.plan = plan
        self.means = means
        self.network = means is not _no_means  # a network level answers the summaries
        self._scores: dict[tuple[int, WindowKey], dict[RecordKey, float | None]] = {}
        # the last published row per record key, per (partition, window)
        self._records: dict[tuple[int, WindowKey], dict[RecordKey, Record]] = {}
        # per (partition, window) published without some network means it reads (its own, or
        # a programme baseline's): the (kind, start) of those; once they all are known, the
        # window goes out once more, even when final
        self._without_network: dict[tuple[int, WindowKey], set[tuple[str, int]]] = {}
        # per (partition, window) with programme records: the network means of the KPIs
        # their effect reads, as last published
        self._means_read: dict[tuple[int, WindowKey], tuple[float | None, ...]] = {}
        # per (partition, window) with programme records: when it last went out (wall clock,
        # ms); expiry keeps such a final window for NETWORK_HOLD_MS after that, so that the
        # network means its effect reads, arriving after it closed, still reach its records
        self._reading_since_ms: dict[tuple[int, WindowKey], int] = {}
        # per (partition, window): the last published programme record per (programme,
        # indicator), for metrics
        self._programmes: dict[tuple[int, WindowKey], dict[tuple[str, str], Record]] = {}
        # per (partition, window) closed and waiting for its network means: since when
        self._deferred_since_ms: dict[tuple[int, WindowKey], int] = {}
        # per (partition, window): the signature of each row as last published
        self._signatures: dict[tuple[int, WindowKey], dict[RecordKey, tuple[Any, ...]]] = {}
        # per (partition, window) closed and waiting for its network means: its rows as
        # scored for its summary (not annotated). A closed window no longer changes, so its
        # final publication and its successor's delta_prev take them instead of scoring it
        # again (every day of a catch-up is scored once, not twice or three times).
        self._closed_rows: dict[tuple[int, WindowKey], list[Record]] = {}

    def _rows(self, state: PartitionState, key: WindowKey, window: Window) -> list[Record]:
        unit, _, start = key
        end = state.window_end(key)
        accumulators = state.accumulators_of(key)
        scores = score_unit(self.plan, accumulators, state.bases_at(unit, end), end - start)
        return list(unit_rows(self.plan, unit, scores))

    def _previous_scores(
        self, state: PartitionState, key: WindowKey
    ) -> dict[RecordKey, float | None] | None:
        unit, kind, start = key
        previous_key = (unit, kind, state.calendar.previous_start(kind, start))  # type: ignore[arg-type]
        cached = self._scores.get((state.partition, previous_key))
        if cached is not None:
            return cached
        window = state.windows.get(previous_key)
        if window is None:
            return None
        rows = self._closed_rows.get((state.partition, previous_key))
        if rows is None:
            rows = self._rows(state, previous_key, window)
        cached = {record_key(r): r["score"] for r in rows}
        self._scores[(state.partition, previous_key)] = cached
        return cached

    def _annotated_rows(
        self, state: PartitionState, key: WindowKey, window: Window
    ) -> list[Record]:
        rows = self._closed_rows.pop((state.partition, key), None)
        if rows is None:
            rows = self._rows(state, key, window)
        _, kind, start = key
        # delta_network against the network means known now (the network level is
        # gathered from every partition, so it trails by a publication)
        network_score, means = self.means(kind, start) or (None, {})
        annotate(
            rows,
            window=kind,
            window_start=state.calendar.isoformat(start),
            version=self.plan.version,
            previous=self._previous_scores(state, key),
            means=means,
            network_score=network_score,
        )
        return rows

    def prime(self, state: PartitionState) -> None:
        """After a restart: the rows of the windows the state holds, as they were last
        published (same state, same scores), for metrics, the API and the change filter,
        without publishing them again."""
        for key in sorted(state.windows):  # calendar windows
            window = state.windows[key]
            if window.changed:  # changed since its last publication: published anew
                continue
            rows = self._annotated_rows(state, key, window)
            self._signatures[(state.partition, key)] = {record_key(r): _signature(r) for r in rows}
            for row in rows:
                row["window_start_ms"] = key[2]
                row["revision"] = window.revision
                row["final"] = window.final
                row["published_at_ms"] = None
                row["newest_event_ingest_ms"] = window.newest_ingest_ms or None
            self._scores[(state.partition, key)] = {record_key(r): r["score"] for r in rows}
            self._records[(state.partition, key)] = {record_key(r): r for r in rows}

    def publish(self, state: PartitionState, now_ms: int, open_windows: bool = True) -> Publication:
        """Rows of the windows that changed or closed; `open_windows=False`: closing ones
        only (the others keep their changes for a later publication)."""
        out = Publication()
        changed = {k for k, w in state.windows.items() if w.changed}
        # a quarter or year moves with its months
        for unit, _, start in [k for k in changed if k[1] == "month"]:
            for merged in MERGED_KINDS:
                key = (unit, merged, state.calendar.window_start(merged, start))
                if key in state.windows:
                    changed.add(key)
        for key in sorted(state.windows):  # calendar windows
            window = state.windows[key]
            # a merged window marked by its month keeps the change for a later publication
            keep = WindowDecision(changed=True) if key in changed and not window.changed else None
            # published before the network level knew what it reads: once it does, the rows
            # get their delta_network (once; later moves of the network means do not publish)
            missing = self._without_network.get((state.partition, key))
            awaiting_network = bool(missing) and all(
                self.means(kind, start) is not None for kind, start in missing or ()
            )
            # a programme's effect reads the network means of its KPIs: when they move (more
            # units' summaries reached the network level), the window goes out again
            means_read = self._programme_means(state, key)
            if means_read != self._means_read.get((state.partition, key), ()):
                awaiting_network = True
            closed = state.is_closed(key)
            if (window.final and not awaiting_network) or (not closed and not open_windows):
                if keep is not None:
                    out.decisions[key] = keep
                continue
            if key not in changed and not closed and not awaiting_network:
                continue
            if closed and self._defer(state.partition, key, now_ms):
                # its one final publication waits for the network means of its window (the
                # network level answers its summary within a second or two): published
                # before, most of its rows would go out twice, the second time with their
                # delta_network. Its summary goes now (again only if it changes).
                out.decisions[key] = WindowDecision(changed=False)
                if key in changed:
                    rows = self._closed_rows[(state.partition, key)] = self._rows(
                        state, key, window
                    )
                    start_iso = state.calendar.isoformat(key[2])
                    out.summaries.append(_summary(key, rows, closed, start_iso))
                continue
            rows = self._annotated_rows(state, key, window)
            if means_read:
                self._means_read[(state.partition, key)] = means_read
            needed = {(key[1], key[2]), *self._baselines_read(state, key)}
            missing = {(k, s) for k, s in needed if self.means(k, s) is None}
            if missing:
                self._without_network[(state.partition, key)] = missing
            else:
                self._without_network.pop((state.partition, key), None)
            if means_read:
                self._reading_since_ms[(state.partition, key)] = now_ms
            unit, kind, start = key
            out.decisions[key] = WindowDecision(changed=False, revision=None)
            published = self._records.setdefault((state.partition, key), {})
            row_keys = [record_key(r) for r in rows]
            self._scores[(state.partition, key)] = {
                k: r["score"] for k, r in zip(row_keys, rows, strict=True)
            }
            signatures = self._signatures.setdefault((state.partition, key), {})
            going = []
            for row_key, row in zip(row_keys, rows, strict=True):
                signature = _signature(row)
                if closed or signatures.get(row_key) != signature:
                    signatures[row_key] = signature
                    going.append((row_key, row))
            programmes = []
            points = self._scores[(state.partition, key)]
            for record in self._programme_records(state, key, points, out.baselines):
                programme_key = ("programme", unit, record["programme"], record["indicator"], None)
                signature = _signature(record)
                if closed or signatures.get(programme_key) != signature:
                    signatures[programme_key] = signature
                    programmes.append(record)
            if not going and not programmes:
                continue
            revision = window.revision + 1
            newest_ms = window.newest_ingest_ms
            if kind in MERGED_KINDS:  # its months' newest event (their latency is observed)
                newest_ms = max((w.newest_ingest_ms for w in state.months_of(key)), default=0)
            out.decisions[key] = WindowDecision(False, revision, closed, newest_ms)
            newest_ingest_ms = newest_ms or None
            if newest_ingest_ms is not None and not closed and kind not in MERGED_KINDS:
                out.latencies_s.append(max(0.0, (now_ms - newest_ingest_ms) / 1000))
            stamp = state.calendar.stamp(kind, start, state.watermark_ms)  # type: ignore[arg-type]
            for row_key, row in going:
                row["window_start_ms"] = start
                row["revision"] = revision
                row["final"] = closed
                row["published_at_ms"] = now_ms
                row["newest_event_ingest_ms"] = newest_ingest_ms
                published[row_key] = row
                out.records.append(row)
                out.stamps.append(stamp)
            kept = self._programmes.setdefault((state.partition, key), {})
            for record in programmes:
                record.update(revision=revision, final=closed, published_at_ms=now_ms)
                out.programmes.append((record, stamp))
                kept[(record["programme"], record["indicator"])] = record
            out.summaries.append(_summary(key, rows, closed, rows[0]["window_start"]))
        return out

    def _defer(self, partition: int, key: WindowKey, now_ms: int) -> bool:
        """Whether a closing window waits for its network means: they are not known yet,
        and it has waited less than NETWORK_HOLD_MS (then it goes out without them, and
        once more when they come)."""
        if not self.network or self.means(key[1], key[2]) is not None:
            self._deferred_since_ms.pop((partition, key), None)
            return False
        since = self._deferred_since_ms.setdefault((partition, key), now_ms)
        if now_ms - since < NETWORK_HOLD_MS:
            return True
        self._deferred_since_ms.pop((partition, key), None)
        return False

    def reads_network(self, partition: int, key: WindowKey, now_ms: int) -> bool:
        """Whether a window's programme records may still wait for network means: it went
        out less than NETWORK_HOLD_MS ago."""
        since = self._reading_since_ms.get((partition, key))
        return since is not None and now_ms - since < NETWORK_HOLD_MS

    def _programme_means(self, state: PartitionState, key: WindowKey) -> tuple[float | None, ...]:
        """The network means a window's programme records read: each improved KPI's mean in
        the window and in the programme's baseline window (empty: no programme record)."""
        unit, kind, start = key
        window = window_kind(kind)
        read: list[float | None] = []
        for programme in self.plan.programmes.values():
            if not programme.covers(unit) or not programme.overlaps(start, state.window_end(key)):
                continue
            now = self.means(kind, start)
            before = self.means(kind, baseline_start(state.calendar, window, programme))
            for service, touchpoint, kpi in programme.improves:
                mean_key = ("kpi", service, touchpoint, kpi)
                read.append(now[1].get(mean_key) if now else None)
                read.append(before[1].get(mean_key) if before else None)
        return tuple(read)

    def _baselines_read(self, state: PartitionState, key: WindowKey) -> set[tuple[str, int]]:
        """The baseline windows (kind, start) whose network means the window's programme
        records read."""
        unit, kind, start = key
        window = window_kind(kind)
        return {
            (kind, baseline_start(state.calendar, window, p))
            for p in self.plan.programmes.values()
            if p.covers(unit) and p.overlaps(start, state.window_end(key))
        }

    def _programme_records(
        self,
        state: PartitionState,
        key: WindowKey,
        points: Mapping[RecordKey, float | None],
        kept_now: dict[tuple[str, tuple[str, int]], BaselinePoints],
    ) -> list[Record]:
        """The unit window's programme records; a window just before a programme's start
        keeps the points of the KPIs the programme improves (its effect's baseline: into
        `kept_now`, for the service to keep in the unit's state)."""
        unit, kind, start = key
        programmes = [p for p in self.plan.programmes.values() if p.covers(unit)]
        unit_state = state.units.get(unit)
        if not programmes or unit_state is None:
            return []
        calendar = state.calendar
        window = window_kind(kind)
        for programme in programmes:
            if baseline_start(calendar, window, programme) == start:
                kept = kept_now.get((unit, (kind, start)))
                if kept is None:
                    kept = kept_now[(unit, (kind, start))] = dict(
                        unit_state.baselines.get((kind, start), {})
                    )
                for ref in programme.improves:
                    kept[ref] = points.get(("kpi", unit, *ref))

        def baseline(programme: ProgrammeDef) -> dict[RecordKey, float | None] | None:
            at = (kind, baseline_start(calendar, window, programme))
            kept = kept_now.get((unit, at), unit_state.baselines.get(at))
            if kept is None:
                return None
            return {("kpi", unit, *ref): value for ref, value in kept.items()}

        def baseline_means(programme: ProgrammeDef) -> Mapping[MeanKey, float] | None:
            view = self.means(kind, baseline_start(calendar, window, programme))
            return view[1] if view is not None else None

        view = self.means(kind, start)
        return programme_records(
            programmes,
            unit=unit,
            window=window,
            window_start_ms=start,
            calendar=calendar,
            values=unit_state.programmes,
            points=points,
            baseline=baseline,
            means=view[1] if view is not None else None,
            baseline_means=baseline_means,
            version=self.plan.version,
        )

    def latest_scores(
        self,
    ) -> list[tuple[tuple[int, WindowKey], dict[RecordKey, float | None]]]:
        """The scores last published per (partition, window), for metrics."""
        return list(self._scores.items())

    def latest_records(self) -> dict[tuple[int, WindowKey], dict[RecordKey, Record]]:
        """The last published row per record key, per (partition, window): metrics, API."""
        return self._records

    def latest_programmes(self) -> dict[tuple[int, WindowKey], dict[tuple[str, str], Record]]:
        """The last published programme records per (partition, window): metrics."""
        return self._programmes

    def forget(self, partition: int, key: WindowKey) -> list[tuple[str, bytes]]:
        """Drop a window; returns (level, topic key) of each of its published records."""
        self._scores.pop((partition, key), None)
        self._programmes.pop((partition, key), None)
        self._means_read.pop((partition, key), None)
        self._reading_since_ms.pop((partition, key), None)
        records = self._records.pop((partition, key), None) or {}
        self._signatures.pop((partition, key), None)
        self._closed_rows.pop((partition, key), None)
        self._without_network.pop((partition, key), None)
        self._deferred_since_ms.pop((partition, key), None)
        return [(r["level"], record_topic_key(r)) for r in records.values()]

    def forget_partition(self, partition: int) -> None:
        for cached in [k for k in self._scores if k[0] == partition]:
            del self._scores[cached]
        for cached in [k for k in self._records if k[0] == partition]:
            del self._records[cached]
        for cached in [k for k in self._signatures if k[0] == partition]:
            del self._signatures[cached]
        for cached in [k for k in self._programmes if k[0] == partition]:
            del self._programmes[cached]
        for cached in [k for k in self._means_read if k[0] == partition]:
            del self._means_read[cached]
        for cached in [k for k in self._reading_since_ms if k[0] == partition]:
            del self._reading_since_ms[cached]
        for cached in [k for k in self._deferred_since_ms if k[0] == partition]:
            del self._deferred_since_ms[cached]
        for cached in [k for k in self._closed_rows if k[0] == partition]:
            del self._closed_rows[cached]
        self._without_network = {
            k: v for k, v in self._without_network.items() if k[0] != partition
        }
