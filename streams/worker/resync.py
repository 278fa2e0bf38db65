"""Reading skipped envelopes again (Faust drops messages after a rebalance now and then).

A fetched batch of the old generation runs Faust's read offset past the records re-fetched
after the rebalance, which it then skips as already read. The score agent notices (an
envelope past the one its state expects) and asks this class to read the partition again
from the expected offset. Seeking back while the partition flows loses the same race (the
batch in hand runs the read offset up again), so the partition is paused first, the batch in
hand is let through (the agent skips it), and only once nothing stale came for a moment is
it sought back and resumed. A seek followed by nothing but later envelopes was lost: again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)
RETRY_S = 2.0  # a seek with nothing after it but later envelopes was lost
QUIET_S = 0.5  # no stale envelope for this long: the batch in hand is through


class Consumer(Protocol):
    def pause_partitions(self, tps: Any) -> None: ...

    def resume_partitions(self, tps: Any) -> None: ...

    async def seek(self, partition: Any, offset: int) -> None: ...


@dataclass
class _Pending:
    expected: int
    last_stale: float  # when an envelope past `expected` last came
    sought_at: float | None = None


class Resync:
    def __init__(self, consumer: Callable[[], Consumer], stable: Callable[[], bool]) -> None:
        self._consumer = consumer  # Faust's, looked up when needed
        self._stable = stable  # no rebalance under way: resuming is ours to do
        self._pending: dict[Any, _Pending] = {}

    def skipped(self, tp: Any, expected: int, got: int, now: float) -> None:
        """Envelope `got` came while `expected` was due: pause the partition (once)."""
        current = self._pending.get(tp)
        if current is not None and current.expected == expected:
            current.last_stale = now
            if current.sought_at is not None and now - current.sought_at > RETRY_S:
                current.sought_at = None  # the seek was lost: pause and seek again
                self._consumer().pause_partitions({tp})
            return
        log.warning(
            "%s[%d]: envelope %d delivered while %d was expected; reading from %d again",
            tp.topic, tp.partition, got, expected, expected,
        )  # fmt: skip
        self._pending[tp] = _Pending(expected, now)
        self._consumer().pause_partitions({tp})

    def arrived(self, tp: Any) -> None:
        """The expected envelope came: the partition is in order again."""
        self._pending.pop(tp, None)

    async def seek_back(self, now: float) -> None:
        """On a timer: partitions quiet since their pause are sought back and resumed."""
        for tp, current in list(self._pending.items()):
            if current.sought_at is None and now - current.last_stale >= QUIET_S:
                current.sought_at = now
                consumer = self._consumer()
                await consumer.seek(tp, current.expected)
                if self._stable():  # in a rebalance Faust resumes, and seeks, itself
                    consumer.resume_partitions({tp})

    def clear(self) -> None:
        """A rebalance: the recovery seeks every partition to where its state resumes."""
        self._pending.clear()
