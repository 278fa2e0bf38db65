"""The Faust tables' changelog writes, and acknowledging input only once they are on the
broker: what makes a commit never get ahead of the state it stands for."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

import faust
from faust.types import TP

from streams.contract.messages import Ackable
from streams.sending import BatchSender, QueuedWrites, SendTracker

log = logging.getLogger(__name__)


class ConfirmingTable(faust.Table):  # type: ignore[type-arg]
    """A table whose changelog sends can be awaited (`confirm_sent`), and whose writes can
    be batched: `put` changes the local store and queues the changelog record, `persist`
    sends the queued records, one record batch per partition. Faust sends each write on its
    own (~30 µs of Python a record), and a flush during a catch-up writes thousands of
    rolling slices."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Faust's own changelog sends (`table[key] = value`): not sent again if one fails,
        # so a failure stays (every confirm raises: better stuck than committed ahead)
        self.sends = SendTracker()
        self.writes = QueuedWrites()  # ours (`put`): a failed send is sent again

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        return self.sends.track(super().send_changelog(*args, **kwargs))

    async def confirm_sent(self) -> None:
        await self.writes.confirm()  # the writes queued before it are sent by then
        await self.sends.confirm()

    def put(self, key: str, value: bytes | None) -> None:
        """Set (value None: delete) a key inside the agent's iteration, as `table[key] =
        value` does (same changelog partition, key bytes and store), without sending yet."""
        partition = self.partition_for_key(key)  # the current event's, as Faust does
        changelog = self.changelog_topic
        encoded, _ = changelog.prepare_key(key, self.key_serializer)
        if value is None:
            with contextlib.suppress(KeyError):
                del self.data[key]
        else:
            self.data[key] = value
        self.writes.queue((changelog.get_topic_name(), value, encoded, partition, None))

    async def persist(self, sender: BatchSender) -> None:
        """Send what `put` queued (`QueuedWrites`: in write order, a failed send's writes
        sent again with the next); returns when the broker has every write made before this
        call. Records the changelog offsets written, as Faust does for a local store to
        resume its recovery from."""
        written = await self.writes.send(sender)
        for (topic, partition), offset in written.items():
            self.data.set_persisted_offset(TP(topic, partition), offset)
        await self.sends.confirm()


def log_unconfirmed(done: asyncio.Future[None]) -> None:
    # Seen here even when the agent, which raises it at its next flush, has stopped first
    # (a worker stopping with a flush in flight): its envelopes are read again.
    if not done.cancelled() and done.exception() is not None:
        log.warning("a state flush was not confirmed: %r", done.exception())


class AckAfterPersist:
    """Faust commits acknowledged offsets, and a commit must never get ahead of the state it
    stands for: the events of a flush are acknowledged once the changelog has the flush's
    writes. A flush whose send failed keeps its events; its writes go out again with the
    next flush (`QueuedWrites`), whose success acknowledges both."""

    def __init__(self) -> None:
        self.waiting: list[Ackable] = []  # events of flushes not confirmed (in order)

    async def acknowledge(self, persisted: Awaitable[None], events: list[Ackable]) -> None:
        self.waiting.extend(events)
        taken = len(self.waiting)  # every write of these events is queued by now
        await persisted  # raises if the send failed: the events stay
        done, self.waiting = self.waiting[:taken], self.waiting[taken:]
        for event in done:
            event.ack()
