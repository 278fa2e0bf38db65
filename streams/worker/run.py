"""Running a worker in this process: Faust's worker without its argv parsing, and the local
table data trusted only after a clean stop."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import faust

from streams.logs import logging_config
from streams.settings import Settings
from streams.worker.gc_policy import tune_gc

log = logging.getLogger(__name__)


CLEAN_SHUTDOWN = ".clean-shutdown"


def distrust_local_state_after_a_crash(data_dir: Path) -> bool:
    """Drop local table data unless the last worker here stopped cleanly; True if dropped.

    A local store (RocksDB) is written before the changelog is acknowledged, and Faust's
    recovery replays the changelog over it from the last acknowledged offset: after a crash
    that can leave one key newer than another that was written before it, which breaks the
    write-order invariant the exactly-once fold relies on. The changelog alone is always a
    prefix, so after an unclean stop the tables are rebuilt from it.
    """
    marker = data_dir / CLEAN_SHUTDOWN
    if marker.exists():
        marker.unlink()
        return False
    if data_dir.exists() and any(data_dir.iterdir()):
        shutil.rmtree(data_dir)
        return True
    return False


def run_worker(app: Any, loglevel: str = "warning") -> None:
    """Run a Faust worker for `app` in this process until it is stopped (no argv parsing)."""
    from faust.cli.base import prepare_app

    data_dir = Path(app.conf.datadir)
    if distrust_local_state_after_a_crash(data_dir):
        log.warning(
            "%s: no clean shutdown recorded; local tables rebuilt from changelogs", data_dir
        )
    prepare_app(app, app.conf.id)
    app.cemi.loglevel = loglevel
    settings: Settings = app.cemi.settings
    # text keeps Faust's own (coloured on a terminal) set-up; json replaces it
    logs = logging_config("json", loglevel) if settings.log_format == "json" else None
    worker = faust.Worker(app, loglevel=loglevel, redirect_stdouts=False, logging_config=logs)
    tune_gc()
    try:
        worker.execute_from_commandline()
    except SystemExit as done:
        if done.code not in (0, None):
            raise
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / CLEAN_SHUTDOWN).touch()
