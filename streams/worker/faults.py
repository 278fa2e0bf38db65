"""Fault points: a test kills the worker at an exact dangerous moment (SIGKILL, no clean-up).

`CEMI_FAULT_AT=<point>` arms one point; unset (always, outside the durability tests) every
call here returns at once. When the worker reaches the armed point the first time, it logs
it and kills itself `CEMI_FAULT_PAUSE_MS` later:

- `await pause_then_kill(point)` holds its caller for the pause (the rest of the worker goes
  on: the fold, flushes, commits), then kills: "crashed while this was in flight";
- `kill_later(point)` lets its caller go on and kills after the pause: "crashed a moment
  after this, before anything else made it durable".

Points: `emit:alert`, `emit:late`, `emit:dead` (an emit holding outbox records of that kind,
before their send), `ack:applied` (an acknowledgement applied to the alert state).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading

log = logging.getLogger(__name__)
_armed: dict[str, float] = {}  # point -> pause in seconds


def arm(point: str | None, pause_ms: int) -> None:
    _armed.clear()
    if point:
        _armed[point] = pause_ms / 1000


def armed(point: str) -> bool:
    return point in _armed


def _reached(point: str) -> float | None:
    pause = _armed.pop(point, None)
    if pause is not None:
        log.warning("fault point %s reached: SIGKILL in %.1f s", point, pause)
    return pause


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def pause_then_kill(point: str) -> None:
    pause = _reached(point)
    if pause is not None:
        await asyncio.sleep(pause)
        _kill()


def kill_later(point: str) -> None:
    pause = _reached(point)
    if pause is not None:
        threading.Timer(pause, _kill).start()
