"""The agents' own logic, without Faust: when the network level publishes."""

from __future__ import annotations

from typing import Any

from streams.worker.agents import NETWORK_MAX_WAIT_S, NETWORK_QUIET_S, NetworkFold


def fold_with_burst(first_s: float, last_s: float) -> NetworkFold:
    fold = NetworkFold(runtime=None, table=None, allowed_lateness_ms=0)  # type: ignore[arg-type]
    fold.burst_since_s, fold.last_event_s = first_s, last_s
    return fold


def test_the_network_level_waits_while_a_burst_of_summaries_arrives() -> None:
    fold = fold_with_burst(100.0, 100.1)
    assert fold.settling(100.1 + NETWORK_QUIET_S / 2)


def test_the_network_level_publishes_once_the_burst_is_quiet() -> None:
    fold = fold_with_burst(100.0, 100.1)
    assert not fold.settling(100.1 + NETWORK_QUIET_S)


def test_a_burst_that_never_ends_is_published_at_the_longest_wait() -> None:
    fold = fold_with_burst(100.0, 100.0 + NETWORK_MAX_WAIT_S)  # a summary just now
    assert not fold.settling(100.0 + NETWORK_MAX_WAIT_S)


def test_without_a_burst_the_network_level_publishes_at_every_tick() -> None:
    fold: Any = fold_with_burst(0.0, 100.0)
    fold.published()
    assert not fold.settling(100.0)
