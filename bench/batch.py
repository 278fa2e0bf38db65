"""Batch scorer throughput: `cemi score` on N generated events vs plain JSON decoding.

    .venv/bin/python bench/batch.py [--events 1000000] [--units 20] [--days 30]

Prints a table: the baseline (orjson decode of every line of the same file, nothing else),
the scorer in-process (read, validate, de-duplicate, bucket, accumulate, roll up, write), and
the real `cemi score` command end to end (process start included). Single core throughout.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from streams.batch import Replay, dump_records
from streams.core.catalog import load_catalog
from streams.core.plan import ScoringPlan
from streams.tools.simulate.generator import DAY_MS, Generator
from streams.worker.gc_policy import tune_gc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--units", type=int, default=20)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        units = tuple(f"U{i:02d}" for i in range(args.units))
        generator = Generator(units=units, span_ms=args.days * DAY_MS, seed=11)
        with path.open("wb") as out:
            lines = sum(
                1 for e in generator.events(args.events) if out.write(orjson.dumps(e) + b"\n")
            )
        print(
            f"{lines:,} events, {args.units} units, {args.days} days, "
            f"{path.stat().st_size / 1e6:.0f} MB of JSON lines; one core"
        )

        start = time.perf_counter()
        with path.open("rb") as source:
            for line in source:
                orjson.loads(line)
        baseline = time.perf_counter() - start

        plan = ScoringPlan(load_catalog())
        tune_gc()  # as `cemi score` does
        start = time.perf_counter()
        replay = Replay(plan)
        with path.open("rb") as source:
            replay.add_lines(source)
        with open(os.devnull, "wb") as sink:
            records = replay.records("month")
            sink.writelines(dump_records(records))
        scorer = time.perf_counter() - start

        start = time.perf_counter()
        cemi = Path(sys.executable).with_name("cemi")
        subprocess.run(
            [str(cemi), "score", "--events", str(path), "--out", os.devnull],
            check=True,
            capture_output=True,
        )
        command = time.perf_counter() - start

    rows = [
        ("baseline: orjson decode only", baseline),
        ("cemi score, in-process (month)", scorer),
        ("cemi score, the command (month)", command),
    ]
    print(f"\n| {'contender':<34} | {'seconds':>8} | {'events/s':>10} | vs baseline |")
    print(f"| {'-' * 34} | {'-' * 8} | {'-' * 10} | ----------- |")
    for name, seconds in rows:
        print(
            f"| {name:<34} | {seconds:8.2f} | {lines / seconds:10,.0f} | "
            f"{baseline / seconds:10.2f}x |"
        )
    print(f"\n{len(records):,} score records; target >= 100,000 events/s on one core")


if __name__ == "__main__":
    main()
