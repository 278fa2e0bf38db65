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

# The ingest child holds no state, but the records waiting in its merge and its envelopes in
# flight live long enough to reach the old generation: with the defaults it ran 38 full
# collections in a 1M-event benchmark run, 6.3 of its ~20 CPU-s, on the core the worker
# shares with it. One full collection after 10 x 100 young ones: 5 collections, 1.3 s.
# Not 1,000 as in the worker: the cyclic garbage that reaches the old generation here (fetch
# and send futures) then waited so long that the child's peak RSS doubled (165 -> 324 MiB).
INGEST_THRESHOLDS: Final = (700, 10, 100)


def tune_gc(thresholds: tuple[int, int, int] = THRESHOLDS) -> None:
    """Call once start-up is done: what exists then (modules, the app) is never garbage and
    is left out of every later collection; the thresholds apply from then on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
