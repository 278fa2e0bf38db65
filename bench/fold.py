"""The worker's CPU per stage, in one process and without Kafka: where a scored event's time goes.

    .venv/bin/python bench/fold.py [--events 200000] [--units 20] [--days 30] [--profile]

The events are `bench/stream.py`'s (the generator, 20 units over 30 days, Avro single-object
encoded). Each stage runs what the worker runs on them, in ingest batches of
`CEMI_INGEST_BATCH_EVENTS` (5,000) records in time order:

- ingest: decode (`EventDecoder`), validate, KPI contributions, envelope entries, envelopes
  per envelope partition (orjson);
- fold: `ScoringService.on_envelope` per envelope, with a flush (to a dict standing for the
  changelog-backed table) every `--flush-every` envelopes per partition, as the catch-up
  pace of the worker does;
- publish: `ScoringService.emit` every `--emit-every` envelopes, and the Avro encoding of
  every message it returns.

It prints a table of CPU seconds (this process's, so other load on the machine matters
little) and events/s per stage, the changelog writes and published
records per event, and the baseline of the same run: `cemi score` (the batch replay, one
pass of the same decoded events). `--profile` adds cProfile's top functions of the fold and
publish stages.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stream import DAY_MS, SEED, history_start_ms
from streams.batch import Replay
from streams.contract.envelope import encode_envelope, entry_for, partition_for
from streams.core.catalog import load_catalog
from streams.core.events import validate_event
from streams.core.plan import ScoringPlan
from streams.scoring.service import ScoringService
from streams.settings import load_settings
from streams.tools.simulate.generator import Generator
from streams.topics import Topics
from streams.wire.codec import EventDecoder, encode
from streams.wire.messages import OutputMessages
from streams.wire.outputs import OutputCodec
from streams.wire.schemas import SchemaStore
from streams.worker.app import fold_config
from streams.worker.gc_policy import tune_gc


class Acked:
    def ack(self) -> bool:
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--units", type=int, default=20)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--flush-every", type=int, default=10, help="envelopes per flush")
    parser.add_argument("--emit-every", type=int, default=8, help="envelopes per emit")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--default-gc", action="store_true", help="CPython's collector thresholds, not ours"
    )
    args = parser.parse_args()

    settings = load_settings()
    plan = ScoringPlan(load_catalog(settings.catalog))
    if not args.default_gc:
        tune_gc()  # as the worker, its ingest child and `cemi score` do
    store = SchemaStore()
    start_ms = history_start_ms(args.days, plan.catalog.timezone)
    units = tuple(f"U{i:02d}" for i in range(args.units))
    generator = Generator(units=units, start_ms=start_ms, span_ms=args.days * DAY_MS, seed=SEED)
    events = sorted(generator.events(args.events), key=lambda e: e["event_time"])
    schemas = {t: store.current_event(t) for t in {e["type"] for e in events}}
    encoded = [encode(schemas[e["type"]], e) for e in events]
    n = len(encoded)
    batch = settings.ingest_batch_events
    print(f"{n:,} events, {args.units} units, {args.days} days, batches of {batch:,}")

    # -- ingest ---------------------------------------------------------------------------
    decoder = EventDecoder(store, settings.max_event_bytes)
    started = time.process_time()
    envelopes: list[tuple[int, bytes]] = []
    for first in range(0, n, batch):
        by_partition: dict[int, list[list[Any]]] = {}
        for offset in range(first, min(first + batch, n)):
            event = validate_event(decoder.decode(encoded[offset]))
            partition = partition_for(event["unit"], args.partitions)
            by_partition.setdefault(partition, []).append(
                entry_for(event, plan.contributions(event), "in", 0, offset, event["event_time"])
            )
        for partition, entries in by_partition.items():
            envelopes.append((partition, encode_envelope(entries)))
    ingest_s = time.process_time() - started

    # -- batch baseline: `cemi score`'s replay of the same events as JSON lines -------------
    lines = [orjson.dumps(e) for e in events]
    started = time.process_time()
    replay = Replay(plan)
    replay.add_lines(lines)
    for kind in ("month", "day"):
        list(replay.records(kind))  # type: ignore[arg-type]
    batch_s = time.process_time() - started

    # -- fold and publish -----------------------------------------------------------------
    config = fold_config(settings, plan)
    outputs = OutputMessages(Topics(settings), OutputCodec(store))
    service = ScoringService(
        plan, config, outputs, flush_interval_s=3600, idle_advance_s=3600,
        flush_max_pending=args.flush_every,
    )  # fmt: skip
    table: dict[str, bytes] = {}
    writes = [0]

    def write(key: str, value: bytes | None) -> None:
        writes[0] += 1
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value

    def load() -> list[tuple[str, bytes]]:
        return list(table.items())

    fold_s = publish_s = 0.0
    published = 0
    profiles = {"fold": cProfile.Profile(), "publish": cProfile.Profile()}
    offsets = dict.fromkeys(range(args.partitions), -1)
    for i, (partition, value) in enumerate(envelopes):
        offsets[partition] += 1
        started = time.process_time()
        if args.profile:
            profiles["fold"].enable()
        service.on_envelope(
            partition, value, Acked(), load, write, backlog=True, offset=offsets[partition]
        )
        if args.profile:
            profiles["fold"].disable()
        fold_s += time.process_time() - started
        if i % args.emit_every == args.emit_every - 1 or i == len(envelopes) - 1:
            started = time.process_time()
            if args.profile:
                profiles["publish"].enable()
            emitted = service.emit()
            service.sent(emitted)  # as the emit task does once the broker has them
            published += len(emitted.messages)
            if args.profile:
                profiles["publish"].disable()
            publish_s += time.process_time() - started
    counts = service.counts()
    assert counts.scored + counts.duplicates + counts.late == n, counts

    rows = [
        ("ingest: decode, validate, contributions, envelopes", ingest_s),
        ("fold: envelopes into state, flushes", fold_s),
        ("publish: emit + Avro encoding", publish_s),
        ("worker CPU in all (the three above)", ingest_s + fold_s + publish_s),
        ("baseline: cemi score (batch replay, decode included)", batch_s),
    ]
    print("\n| stage | seconds | events/s |\n| --- | ---: | ---: |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {n / seconds:,.0f} |")
    total = ingest_s + fold_s + publish_s
    print(
        f"\nworker CPU / batch: {total / batch_s:.1f}x; changelog writes {writes[0]:,} "
        f"({writes[0] / n:.3f} per event); messages published {published:,} "
        f"({published / n:.3f} per event); {len(envelopes):,} envelopes"
    )
    if args.profile:
        for name, profile in profiles.items():
            for order in ("tottime", "cumulative"):
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats(order).print_stats(18)
                print(f"\n-- {name}: top by {order} --")
                print("\n".join(out.getvalue().splitlines()[6:30]))


if __name__ == "__main__":
    main()
