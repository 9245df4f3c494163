"""The gateway's handler slots (``devtools/gateway/fairness.py``): round-robin by user, a bounded share each."""
from __future__ import annotations

import asyncio

import pytest

from devtools.gateway.fairness import FairSlots


def test_a_quiet_key_is_served_before_a_busy_keys_backlog() -> None:
    async def scenario() -> list[str]:
        slots = FairSlots(2, per_key=2)
        order: list[str] = []
        release = asyncio.Event()

        async def call(key: str, n: int) -> None:
            async with slots.slot(key):
                order.append(f"{key}{n}")
                await release.wait()

        busy = [asyncio.create_task(call("a", n)) for n in range(20)]
        await asyncio.sleep(0)
        quiet = asyncio.create_task(call("b", 0))
        await asyncio.sleep(0)
        assert order == ["a0", "a1"] and slots.waiting == 19
        release.set()
        await asyncio.gather(*busy, quiet)
        return order

    order = asyncio.run(scenario())
    assert order.index("b0") <= 3  # within one turn of the busy key, not after its backlog of 18
    assert sorted(order) == sorted([f"a{n}" for n in range(20)] + ["b0"])


def test_one_key_never_holds_more_than_its_share() -> None:
    async def scenario() -> int:
        slots = FairSlots(8, per_key=3)
        running, peak = 0, 0

        async def call() -> None:
            nonlocal running, peak
            async with slots.slot("flood"):
                running += 1
                peak = max(peak, running)
                await asyncio.sleep(0.001)
                running -= 1

        await asyncio.gather(*(call() for _ in range(50)))
        return peak

    assert asyncio.run(scenario()) == 3


def test_a_cancelled_waiter_passes_its_turn_on() -> None:
    async def scenario() -> bool:
        slots = FairSlots(1, per_key=1)
        gate = asyncio.Event()

        async def hold() -> None:
            async with slots.slot("a"):
                await gate.wait()

        async def quick(key: str) -> bool:
            async with slots.slot(key):
                return True

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        doomed = asyncio.create_task(quick("b"))
        survivor = asyncio.create_task(quick("c"))
        await asyncio.sleep(0)
        doomed.cancel()
        gate.set()
        await holder
        with pytest.raises(asyncio.CancelledError):
            await doomed
        return await asyncio.wait_for(survivor, 2)

    assert asyncio.run(scenario()) is True
