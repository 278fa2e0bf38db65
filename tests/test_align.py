"""The ingest's merge of input partitions in record-timestamp order (pure: no broker)."""

from __future__ import annotations

import heapq
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.ingest.align import Aligner

Rec = tuple[int, int]  # (record timestamp, offset): the merge reads item 0


def heap_release(
    buffers: dict[str, deque[Rec]], caught_up: set[str], limit: int
) -> list[tuple[str, Rec]]:
    """The reference: one heap operation per record."""
    heads = [(b[0][0], i, p) for i, (p, b) in enumerate(buffers.items()) if b]
    heapq.heapify(heads)
    out: list[tuple[str, Rec]] = []
    while heads and len(out) < limit:
        _, i, partition = heapq.heappop(heads)
        buffer = buffers[partition]
        out.append((partition, buffer.popleft()))
        if buffer:
            heapq.heappush(heads, (buffer[0][0], i, partition))
        elif partition not in caught_up:
            break
    return out


partition_records = st.lists(st.integers(0, 30), max_size=25).map(
    lambda times: [(t, offset) for offset, t in enumerate(sorted(times))]
)


@settings(max_examples=300, deadline=None)
@given(
    partitions=st.dictionaries(st.sampled_from("abcdef"), partition_records, max_size=6),
    caught_up=st.sets(st.sampled_from("abcdef")),
    limit=st.integers(1, 40),
)
def test_release_gives_the_order_and_stop_of_a_record_by_record_heap_merge(
    partitions: dict[str, list[Rec]], caught_up: set[str], limit: int
) -> None:
    """Runs of one partition are taken without a heap operation per record; the records,
    their order (ties by partition order) and where a drained partition stops the batch
    are those of merging record by record."""
    aligner: Aligner[str] = Aligner(max_wait_s=1.0)
    reference: dict[str, deque[Rec]] = {}
    for partition, records in partitions.items():
        aligner.add(partition, records)
        reference[partition] = deque(records)
    for _ in range(4):  # successive batches continue where the last one stopped
        expected = heap_release(reference, caught_up, limit)
        assert aligner.release(caught_up.__contains__, limit) == expected


def test_the_next_record_is_the_head_of_what_the_merge_still_holds_of_a_partition() -> None:
    aligner: Aligner[str] = Aligner(max_wait_s=1.0)
    aligner.add("base", [(86_400_000, 0), (172_800_000, 1)])
    aligner.add("orders", [(1_000, 0), (90_000_000, 1)])
    assert aligner.next_record("nothing") is None
    released = aligner.release(lambda p: False, 2)
    assert released == [("orders", (1_000, 0)), ("base", (86_400_000, 0))]
    assert aligner.next_record("base") == (172_800_000, 1)
    assert aligner.next_record("orders") == (90_000_000, 1)
    aligner.release(lambda p: True, 5)
    assert aligner.next_record("base") is None
