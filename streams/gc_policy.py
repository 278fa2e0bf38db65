"""Cycle-collector settings for the processes that hold the scoring state.

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


def tune_gc() -> None:
    """Call once start-up is done: what exists then (modules, the app) is never garbage and
    is left out of every later collection; the thresholds above apply from then on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
