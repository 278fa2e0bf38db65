"""Cycle-collector settings for the worker, its ingest child and `cemi score`.

A worker keeps hundreds of thousands of container objects alive for minutes (windows, their
accumulators and guards, seen ids, published rows). With CPython's default thresholds
(700, 10, 10) the cycle collector rescans all of them in a full collection after every 100
young ones (whenever the long-lived objects grew by a quarter, which a growing state always
does): `bench/fold.py` measured two thirds of the fold's CPU in the collector (500k events:
fold 19.6 CPU-s with the defaults, 6.2 with these). Young collections stay as they are, so the
short-lived cyclic garbage of asyncio, aiokafka and Faust (futures, tracebacks, fetch
buffers) is freed as promptly as before: raising the young threshold to 50,000 instead cost
the worker 160 MiB and its ingest child 150 MiB of peak RSS in the 1M benchmark.
"""

from __future__ import annotations

import gc
from typing import Final

# CPython's young thresholds; a full collection after 10 x 1,000 young ones instead of 10 x 10
THRESHOLDS: Final = (700, 10, 1_000)

# The ingest child holds no state: CPython's defaults, after the freeze. The records waiting in
# its merge are kept as tuples the collector stops tracking (`streams/ingest/stage.py`), so a full
# collection there scans little. Measured in 1M-event benchmark runs: with aiokafka's records
# in the merge, 38 full collections took 6.3 of the child's ~20 CPU-s; (700, 10, 100) cut that
# to 5 taking 1.3 s but raised the child's peak RSS by 30-50 MiB (1,000: doubled it, 165 ->
# 324 MiB: cyclic garbage such as futures waits in the old generation); untracked records with
# these thresholds: 45 full collections, 1.6 s in all, 148-153 MiB.
INGEST_THRESHOLDS: Final = (700, 10, 10)


def tune_gc(thresholds: tuple[int, int, int] = THRESHOLDS) -> None:
    """Call once start-up is done: what exists then (modules, the app) is never garbage and
    is left out of every later collection; the thresholds apply from then on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
