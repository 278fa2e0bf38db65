"""API readiness against history: how long a worker's output view takes to catch up with
score topics holding D days of records, following from the beginning (the baseline, what
the API did before) or from the newest month (`streams/http/follow.py`).

    .venv/bin/python bench/api_follow.py [--days 90] [--units 6] [--publications 4]

The topics hold what the scorer publishes for `units` units with the default catalog's
record keys: per day, each day-window and month-window row `publications` times (ts: the
window's start). Prints a table of the time to `caught_up` and the records read, and the
ratio of the two times. Runs on the embedded broker (the binary search stands in for
`offsets_for_times`, which it does not answer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.broker import EmbeddedBroker
from streams.core.catalog import load_catalog
from streams.core.plan import ScoringPlan
from streams.core.windows import LocalCalendar
from streams.http.follow import follow_topics
from streams.http.view import OutputView
from streams.settings import load_settings
from streams.topics import Topics, create_topics

DAY_MS = 86_400_000


def row_keys(plan: ScoringPlan, unit: str) -> list[str]:
    keys = [f"unit/{unit}/-/-/-"]
    for svc in plan.services:
        keys.append(f"service/{unit}/{svc.service}/-/-")
        for ti in svc.touchpoints:
            tp = plan.touchpoints[ti]
            keys.append(f"touchpoint/{unit}/{svc.service}/{tp.touchpoint}/-")
            keys.extend(
                f"kpi/{unit}/{svc.service}/{tp.touchpoint}/{plan.kpis[k].kpi}" for k in tp.kpis
            )
    return keys


async def fill(url: str, topics: Topics, days: int, units: int, publications: int) -> int:
    plan = ScoringPlan(load_catalog())
    calendar = LocalCalendar(plan.catalog.timezone)
    start = calendar.window_start("day", int(time.time() * 1000) - days * DAY_MS)
    producer = AIOKafkaProducer(bootstrap_servers=url, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    value = b"\xc3\x01" + b"\x00" * 200  # the view keeps bytes; only keys are parsed
    sent = 0
    try:
        keys = {u: row_keys(plan, f"U{u:02d}") for u in range(units)}
        for d in range(days):
            day = start + d * DAY_MS
            month = calendar.window_start("month", day)
            futures = []
            for _ in range(publications):
                for unit_keys in keys.values():
                    for window, ws in (("day", day), ("month", month)):
                        iso = calendar.isoformat(ws)
                        for prefix in unit_keys:
                            level = prefix.split("/", 1)[0]
                            topic = topics.output("kpi" if level == "kpi" else "scores")
                            key = f"{prefix}/{window}/{iso}".encode()
                            futures.append(
                                await producer.send(topic, value, key=key, timestamp_ms=ws)
                            )
            await asyncio.gather(*futures)
            sent += len(futures)
    finally:
        await producer.stop()
    return sent


async def time_to_ready(url: str, settings: Any, bounded: bool) -> tuple[float, int]:
    topics = Topics(settings)
    view = OutputView()
    names = [topics.output("scores"), topics.output("kpi"), topics.output("alerts")]
    started = time.monotonic()
    calendar = LocalCalendar("Asia/Ho_Chi_Minh")
    stream = follow_topics(
        settings,
        url,
        names,
        view,
        bounded=names[:2] if bounded else (),
        calendar=calendar,
    )
    counted = [0]

    async def consume() -> None:
        async for message in stream:
            counted[0] += 1
            view.add_score(message.key, message.value)

    task = asyncio.ensure_future(consume())
    while not view.caught_up and not task.done():
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    read = counted[0]
    return elapsed, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--units", type=int, default=6)
    parser.add_argument("--publications", type=int, default=4)
    args = parser.parse_args()
    with EmbeddedBroker() as broker:
        name = f"f{uuid.uuid4().hex[:6]}"
        settings = load_settings(
            broker_url=broker.url, topic_prefix=name, app_id=name, broker_workarounds=True
        )
        asyncio.run(create_topics(settings, broker.url))
        filled_at = time.monotonic()
        total = asyncio.run(fill(broker.url, Topics(settings), args.days, args.units,
                                 args.publications))  # fmt: skip
        print(f"{total:,} records over {args.days} days written in "
              f"{time.monotonic() - filled_at:.1f} s")  # fmt: skip
        base_s, base_read = asyncio.run(time_to_ready(broker.url, settings, bounded=False))
        new_s, new_read = asyncio.run(time_to_ready(broker.url, settings, bounded=True))
    print("| follower | records read | time to caught up |\n| --- | ---: | ---: |")
    print(f"| from the beginning (baseline) | {base_read:,} | {base_s:.2f} s |")
    print(f"| from the newest month | {new_read:,} | {new_s:.2f} s |")
    print(f"ratio (baseline / newest month): {base_s / new_s:.1f}x")


if __name__ == "__main__":
    main()
