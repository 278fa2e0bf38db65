"""Cycle-collector settings for the processes that hold the scoring state.

A worker keeps hundreds of thousands of container objects alive for minutes (windows, their
accumulators and guards, seen ids, published rows). With CPython's default thresholds
(700, 10, 10) the cycle collector rescans them in full again and again as the state grows:
`bench/fold.py` measured two thirds of the fold's CPU in the collector (500k events: fold
19.6 s with the defaults, 6.2 s with these). Reference counting frees almost everything the
hot path allocates; the collector is still needed for the cyclic garbage of asyncio, aiokafka
and Faust (futures, tracebacks), which these thresholds still collect, only in larger rounds.
"""

from __future__ import annotations

import gc
from typing import Final

# a young collection per 50,000 net allocations; a full one after 20 x 100 young ones (and
# only when the long-lived objects grew by a quarter, CPython's own rule)
THRESHOLDS: Final = (50_000, 20, 100)


def tune_gc() -> None:
    """Call once start-up is done: what exists then (modules, the app) is never garbage and
    is left out of every later collection; the thresholds above apply from then on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
