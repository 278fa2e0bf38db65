"""The naive baseline of `bench/stream.py`: a minimal Faust app, one event per Faust message.

    .venv/bin/python bench/naive_faust.py --bootstrap HOST:PORT --app-id ID --topic T [--topic T...]
        --expect N [--partitions P]

Its agent consumes the input topics as raw bytes, decodes each event (EventDecoder, as the
scorer's ingest does), re-keys the stream by unit (`group_by`, through a repartition topic)
and counts the events per unit in a 1-day tumbling window table (relative to event time):
the textbook Faust shape of "aggregate events per key and day". Decoding happens twice, before
the `group_by` (to get the unit) and after the repartition hop (to read the event), as a Faust
record model would deserialize at both ends.

Prints one line per milestone on stdout, for the parent to time:
`FIRST <wall s>` at the first event counted, `PROGRESS <count> <wall s>` every 10,000 and
`DONE <count> <wall s>` when `--expect` events were counted. It runs until it is stopped.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from typing import Any

import faust
from faust.cli.base import prepare_app

from streams.wire.codec import EventDecoder
from streams.wire.schemas import SchemaStore


def build(args: argparse.Namespace) -> Any:
    app = faust.App(
        args.app_id,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_partitions=args.partitions,
        broker_session_timeout=6,
        broker_rebalance_timeout=6,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
    )
    decode = EventDecoder(SchemaStore()).decode
    source = app.topic(*args.topic, key_serializer="raw", value_serializer="raw")
    # group_by derives its repartition topic's name from the source, which fails for a
    # multi-topic source: name it (what `group_by` would create for one topic).
    by_unit = app.topic(
        f"{args.app_id}-unit-repartition",
        key_serializer="raw",
        value_serializer="raw",
        partitions=args.partitions,
        internal=True,
    )
    event_time_s = [0.0]  # the event time of the event being counted (window position)
    per_unit_day = (
        app.Table("per_unit_day", default=int, partitions=args.partitions)
        .tumbling(timedelta(days=1), expires=timedelta(days=90))
        .relative_to(lambda _event: event_time_s[0])
    )
    expect = args.expect
    counted = [0]

    def unit_of(value: bytes) -> bytes:
        return str(decode(value)["unit"]).encode()

    @app.agent(source)
    async def count(stream: Any) -> None:
        async for value in stream.group_by(unit_of, name="unit", topic=by_unit):
            event = decode(value)
            event_time_s[0] = event["event_time"] / 1000
            per_unit_day[event["unit"]] += 1
            counted[0] += 1
            n = counted[0]
            if n == 1:
                print(f"FIRST {time.time():.4f}", flush=True)
            if n % 10_000 == 0:
                print(f"PROGRESS {n} {time.time():.4f}", flush=True)
            if n == expect:
                print(f"DONE {n} {time.time():.4f}", flush=True)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--topic", action="append", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--loglevel", default="warning")
    args = parser.parse_args()
    app = build(args)
    prepare_app(app, app.conf.id)
    worker = faust.Worker(app, loglevel=args.loglevel, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as done:
        if done.code not in (0, None):
            raise
    sys.stdout.flush()


if __name__ == "__main__":
    main()
