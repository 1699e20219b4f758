"""Coalescer: one run per burst of requests, and a run always follows the last request."""

from __future__ import annotations

import asyncio

from simdev.operator.coalesce import Coalescer


def test_requests_during_a_run_make_one_more_run() -> None:
    runs: list[int] = []
    gate = asyncio.Event()

    async def job() -> None:
        runs.append(len(runs))
        await gate.wait()

    async def scenario() -> None:
        c = Coalescer("test")
        first = c.poke(job)
        await asyncio.sleep(0)  # the first run starts and waits on the gate
        for _ in range(50):
            assert c.poke(job) is first
        gate.set()
        await first

    asyncio.run(scenario())
    assert runs == [0, 1]


def test_run_waits_for_a_run_that_started_after_it_and_survives_failures() -> None:
    seen: list[str] = []
    state = {"value": "old"}

    async def failing() -> None:
        raise RuntimeError("boom")

    async def job() -> None:
        seen.append(state["value"])

    async def scenario() -> None:
        c = Coalescer("test", delay=0.01)
        await c.run(failing)  # logged, not raised
        state["value"] = "new"
        await c.run(job)

    asyncio.run(scenario())
    assert seen == ["new"]
