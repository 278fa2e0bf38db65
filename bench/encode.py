"""Output record encoding: fastavro `schemaless_writer` vs the specialised writers of `encode`.

    .venv/bin/python bench/encode.py [--records 50000] [--rounds 7]

The records are the KpiWindow and CemiScore rows the batch replay scores from generated events
(every level, nulls where the scorer leaves them), with the fields the stream adds when it
publishes them: a window start, a revision, `final`, a publication time shared by the rows of
one publication (40 here) and the newest ingest time of the window. A second set gives every
record timestamps of its own (nothing repeats for the writers' caches). Both contenders write
the same bytes (checked); the rounds alternate between them and the best round of each counts.
One core.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from datetime import datetime
from io import BytesIO
from typing import Any

import orjson
from fastavro import schemaless_writer

from streams.batch import Replay
from streams.core.catalog import load_catalog
from streams.core.plan import ScoringPlan
from streams.tools.simulate.generator import Generator
from streams.wire.codec import encode
from streams.wire.schemas import SchemaStore, StoredSchema

Pair = tuple[StoredSchema, dict[str, Any]]


def fastavro_encode(schema: StoredSchema, record: dict[str, Any]) -> bytes:
    """`encode` as it was: fastavro's schemaless writer into a BytesIO."""
    out = BytesIO()
    out.write(schema.header)
    schemaless_writer(out, schema.parsed, record)
    return out.getvalue()


def score_rows(count: int, shared_times: bool) -> list[dict[str, Any]]:
    replay = Replay(ScoringPlan(load_catalog()))
    replay.add_lines(orjson.dumps(e) for e in Generator(seed=5).events(20_000))
    rows = replay.records("day") + replay.records("month")
    now_ms = 1_793_500_000_000
    out: list[dict[str, Any]] = []
    while len(out) < count:
        for row in rows[: count - len(out)]:
            i = len(out)
            start = int(datetime.fromisoformat(row["window_start"]).timestamp() * 1000)
            published = now_ms + (i // 40 if shared_times else i)
            out.append(
                {
                    **row,
                    "window_start_ms": start,
                    "revision": 1 + i // 500,
                    "final": i % 7 == 0,
                    "published_at_ms": published,
                    "newest_event_ingest_ms": None if i % 5 == 0 else published - 1 - i % 997,
                }
            )
    return out


def best_of(
    rounds: int, pairs: list[Pair], contenders: dict[str, Callable[[StoredSchema, Any], bytes]]
) -> dict[str, float]:
    """Best µs/record of each contender, rounds alternating between them."""
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(rounds):
        for name, write in contenders.items():
            start = time.perf_counter()
            for schema, record in pairs:
                write(schema, record)
            best[name] = min(best[name], (time.perf_counter() - start) / len(pairs) * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    store = SchemaStore()
    kpi, score = store.current_record("KpiWindow"), store.current_record("CemiScore")
    contenders: dict[str, Callable[[StoredSchema, Any], bytes]] = {
        "fastavro": fastavro_encode,
        "specialised": encode,
    }
    print(f"| {'records':<36} | fastavro µs | specialised µs | speed-up |")
    print(f"| {'-' * 36} | ----------- | ------------ | -------- |")
    for shared, label in ((True, "publication times shared"), (False, "every timestamp distinct")):
        pairs = [
            (kpi if r["level"] == "kpi" else score, r) for r in score_rows(args.records, shared)
        ]
        assert all(fastavro_encode(s, r) == encode(s, r) for s, r in pairs), "bytes differ"
        subsets = {
            f"KpiWindow ({label})": [p for p in pairs if p[0] is kpi],
            f"CemiScore ({label})": [p for p in pairs if p[0] is score],
            f"all {len(pairs):,} ({label})": pairs,
        }
        for name, subset in subsets.items():
            best = best_of(args.rounds, subset, contenders)
            old, new = best["fastavro"], best["specialised"]
            print(f"| {name:<36} | {old:11.2f} | {new:12.2f} | {old / new:7.1f}x |")


if __name__ == "__main__":
    main()
