"""The cycle-collector settings of the worker, its ingest child and `cemi score`."""

from __future__ import annotations

import gc

import pytest

from streams.worker.gc_policy import INGEST_THRESHOLDS, THRESHOLDS, tune_gc


@pytest.mark.parametrize("thresholds", [THRESHOLDS, INGEST_THRESHOLDS], ids=["worker", "ingest"])
def test_tuning_freezes_the_start_up_objects_and_sets_the_given_thresholds(
    thresholds: tuple[int, int, int],
) -> None:
    before = gc.get_threshold()
    try:
        tune_gc(thresholds)
        assert gc.get_threshold() == thresholds
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
