"""The cycle-collector settings of the worker, its ingest child and `cemi score`."""

from __future__ import annotations

import gc

from streams.gc_policy import THRESHOLDS, tune_gc


def test_tuning_freezes_the_start_up_objects_and_raises_the_thresholds() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
