"""The ingest in a child process of the worker, so that it runs on a core of its own.

In one process the ingest and the fold share one event loop: while a backlog is read, the
ingest (a whole input batch per turn) left the fold a few percent of the core, and the
second core sat mostly idle. The child runs the same `Ingest`; the worker keeps a handle
(`IngestProcess`) with the same `stats`, `run()` and `stop()`.

- Settings go to the child on its stdin (secrets included: never in argv or the
  environment of a process list), the bootstrap and log level in argv.
- The child reports its counters as one JSON line on stdout every `STATS_INTERVAL_S` and
  once more when it stops.
- It dies with the worker (Linux parent-death signal): a SIGKILLed worker leaves no ingest
  behind, and its input offsets are committed only for envelopes the broker acknowledged,
  as in one process. SIGTERM stops it cleanly (in-flight batches acknowledged, committed).
- If the child dies alone it is started again; its counters continue from where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Final

import orjson
from pydantic import SecretStr

from streams.core.catalog import load_catalog
from streams.core.plan import ScoringPlan
from streams.ingest.stage import STOP_TIMEOUT_S, Ingest, IngestStats
from streams.logs import configure_logging
from streams.sending import batch_producer
from streams.settings import Settings
from streams.topics import Topics
from streams.wire.messages import OutputMessages
from streams.wire.outputs import OutputCodec
from streams.wire.registry import SchemaRegistry
from streams.wire.schemas import SchemaStore
from streams.worker.gc_policy import INGEST_THRESHOLDS, tune_gc

log = logging.getLogger(__name__)
STATS_INTERVAL_S: Final = 0.1
RESTART_DELAY_S: Final = 1.0
_PR_SET_PDEATHSIG: Final = 1


def settings_payload(settings: Settings) -> bytes:
    """The settings as given (from the environment or explicitly), secrets in clear: for the
    child's stdin only."""
    values: dict[str, Any] = {}
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, Path):
            value = str(value)
        values[name] = value
    return orjson.dumps(values) + b"\n"


def stats_line(stats: IngestStats) -> bytes:
    return (
        orjson.dumps(
            {
                "consumed": stats.consumed,
                "enveloped": stats.enveloped,
                "dead_lettered": stats.dead_lettered,
                "batches": stats.batches,
                "lag": [[topic, partition, n] for (topic, partition), n in stats.lag.items()],
                "running": stats.running,
            }
        )
        + b"\n"
    )


class IngestProcess:
    """The worker's handle on its ingest child process."""

    def __init__(self, settings: Settings, bootstrap: str, loglevel: str = "warning") -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.loglevel = loglevel.upper()  # the worker's (its root logger may say DEBUG)
        self.stats = IngestStats()
        self._before = IngestStats()  # counters of children that ended
        self._child: asyncio.subprocess.Process | None = None
        self._stopping = False

    async def run(self) -> None:
        """Run the child until `stop()`, starting it again if it dies alone."""
        while not self._stopping:
            code = await self._run_child()
            if self._stopping:
                return
            log.error("ingest process exited with %s: starting it again", code)
            self._child_ended()
            await asyncio.sleep(RESTART_DELAY_S)

    def _child_ended(self) -> None:
        """The next child's counters start at 0: they continue from this one's."""
        self._before = IngestStats(
            consumed=self.stats.consumed,
            enveloped=self.stats.enveloped,
            dead_lettered=Counter(self.stats.dead_lettered),
            batches=self.stats.batches,
        )
        self.stats.running = False
        self.stats.lag = {}

    async def _run_child(self) -> int:
        child = self._child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streams.ingest.process",
            self.bootstrap,
            self.loglevel,
            str(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(settings_payload(self.settings))
            await child.stdin.drain()
            child.stdin.close()
            async for line in child.stdout:
                self._update(orjson.loads(line))
            return await child.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            raise

    def _update(self, report: dict[str, Any]) -> None:
        before, stats = self._before, self.stats
        stats.consumed = before.consumed + report["consumed"]
        stats.enveloped = before.enveloped + report["enveloped"]
        stats.batches = before.batches + report["batches"]
        stats.dead_lettered = before.dead_lettered + Counter(report["dead_lettered"])
        stats.lag = {(topic, partition): n for topic, partition, n in report["lag"]}
        stats.running = report["running"]

    def stop(self) -> None:
        """Ask the child to stop cleanly (it commits what the broker acknowledged)."""
        self._stopping = True
        if self._child is not None and self._child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._child.send_signal(signal.SIGTERM)

    async def stopped(self) -> None:
        """Wait for the child to end after `stop()` (killed after STOP_TIMEOUT_S)."""
        child = self._child
        if child is None or child.returncode is not None:
            return
        try:
            await asyncio.wait_for(child.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.error("ingest process did not stop in %.0f s: killed", STOP_TIMEOUT_S)
            with contextlib.suppress(ProcessLookupError):
                child.kill()


# -- the child -------------------------------------------------------------------------------


def _die_with(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        raise SystemExit(0)


def _schemas(settings: Settings) -> SchemaStore:
    """The worker's schema store: with a registry, framed input is read and dead letters are
    framed like every other output (the worker registered the schemas already: the same
    registration again returns their ids)."""
    store = SchemaStore()
    if settings.schema_registry_url:
        outputs = OutputMessages(Topics(settings), OutputCodec(store, settings.output_format))
        outputs.use_registry(SchemaRegistry(settings.schema_registry_url))
    return store


async def _serve(settings: Settings, bootstrap: str, plan: ScoringPlan, store: SchemaStore) -> None:
    producer = batch_producer(settings, bootstrap)
    await producer.start()
    ingest = Ingest(settings, plan, store, bootstrap, producer)
    tune_gc(INGEST_THRESHOLDS)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, ingest.stop)
    # Ctrl-C in a terminal reaches the whole process group: the worker handles it and stops
    # this process with SIGTERM (stopping on its own first would look like a crash to it)
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    out = sys.stdout.buffer

    async def report() -> None:
        last = b""
        while True:
            line = stats_line(ingest.stats)
            if line != last:
                out.write(line)
                out.flush()
                last = line
            await asyncio.sleep(STATS_INTERVAL_S)

    reporter = asyncio.create_task(report())
    try:
        await ingest.run()
    finally:
        reporter.cancel()
        ingest.stats.running = False
        out.write(stats_line(ingest.stats))
        out.flush()
        await producer.stop()


def main() -> None:
    bootstrap, level, parent = sys.argv[1], sys.argv[2], int(sys.argv[3])
    _die_with(parent)
    settings = Settings(**orjson.loads(sys.stdin.buffer.readline()))
    configure_logging(settings.log_format, level)
    plan = ScoringPlan(load_catalog(settings.catalog))
    asyncio.run(_serve(settings, bootstrap, plan, _schemas(settings)))


if __name__ == "__main__":
    main()
