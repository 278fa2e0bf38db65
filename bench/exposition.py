"""The worker's /metrics body: `streams.http.metrics.exposition` vs prometheus_client's
`generate_latest` (the baseline, measured in the same run), on the worker's collector with
many units' scores.

    .venv/bin/python bench/exposition.py [--units 20] [--rounds 7]

Both write the same bytes (checked); the rounds alternate and the best round of each counts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from prometheus_client import generate_latest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' fake scoring

from streams.http.metrics import CemiCollector, exposition, registry_for
from tests.deploy.test_metrics_exposition import fake_scoring, ingest_stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    registry = registry_for(CemiCollector(fake_scoring(args.units), ingest_stats, "v"))
    body = generate_latest(registry)
    assert exposition(registry) == body, "the two bodies differ"
    best = {"generate_latest": float("inf"), "exposition": float("inf")}
    for _ in range(args.rounds):
        for name, write in (("generate_latest", generate_latest), ("exposition", exposition)):
            start = time.perf_counter()
            write(registry)
            best[name] = min(best[name], time.perf_counter() - start)
    lines = body.count(b"\n")
    print(f"{args.units} units, {lines:,} lines, {len(body):,} bytes; best of {args.rounds}\n")
    print("| writer | seconds | lines/s |")
    print("| --- | ---: | ---: |")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.4f} | {lines / seconds:,.0f} |")
    ratio = best["generate_latest"] / best["exposition"]
    print(f"\nexposition is {ratio:.2f}x generate_latest (the baseline)")


if __name__ == "__main__":
    main()
