"""SendTracker: confirmation of changelog sends shared by the agent and the rebalance."""

from __future__ import annotations

import asyncio

import pytest

from streams.sending import SendTracker


def test_a_confirm_waits_for_sends_another_caller_is_already_waiting_for() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        tracker = SendTracker()
        first, second = loop.create_future(), loop.create_future()
        tracker.track(first)
        tracker.track(second)
        order: list[str] = []

        async def agent() -> None:
            await tracker.confirm()
            order.append("agent confirmed")

        async def rebalance() -> None:
            await asyncio.sleep(0)  # the agent is already waiting
            await tracker.confirm()
            order.append("rebalance confirmed")

        tasks = [asyncio.create_task(agent()), asyncio.create_task(rebalance())]
        await asyncio.sleep(0.01)
        order.append("sends acknowledged")
        first.set_result(1)
        second.set_result(2)
        await asyncio.gather(*tasks)
        return order

    order = asyncio.run(scenario())
    assert order[0] == "sends acknowledged"
    assert sorted(order[1:]) == ["agent confirmed", "rebalance confirmed"]


def test_sends_tracked_during_a_confirm_stay_tracked_for_the_next_one() -> None:
    async def scenario() -> bool:
        loop = asyncio.get_running_loop()
        tracker = SendTracker()
        early, late = loop.create_future(), loop.create_future()
        tracker.track(early)
        waiting = asyncio.create_task(tracker.confirm())
        await asyncio.sleep(0)
        tracker.track(late)
        early.set_result(None)
        await waiting
        second = asyncio.create_task(tracker.confirm())
        await asyncio.sleep(0.01)
        still_waiting = not second.done()
        late.set_result(None)
        await second
        return still_waiting

    assert asyncio.run(scenario())


def test_a_failed_send_fails_every_confirm() -> None:
    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        tracker = SendTracker()
        failed = loop.create_future()
        failed.set_exception(OSError("broker gone"))
        tracker.track(failed)
        raised = 0
        for _ in range(2):
            with pytest.raises(OSError):
                await tracker.confirm()
            raised += 1
        return raised

    assert asyncio.run(scenario()) == 2
