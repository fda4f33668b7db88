"""Bounded shutdown steps: a step that overruns is abandoned, even one ignoring cancellation."""

from __future__ import annotations

import asyncio
import logging

import pytest

from app.platform.shutdown import bounded


async def test_a_step_that_finishes_in_time_is_awaited() -> None:
    done: list[str] = []

    async def step() -> None:
        await asyncio.sleep(0)
        done.append("closed")

    assert await bounded("a quick step", step(), 5.0) is True
    assert done == ["closed"]


async def test_a_step_that_never_ends_is_abandoned_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    forever = asyncio.Event()
    stubborn_exited = asyncio.Event()

    async def stubborn() -> None:
        # Swallows the first cancellation, as a library's close routine may.
        try:
            await forever.wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0)
        stubborn_exited.set()

    with caplog.at_level(logging.WARNING, logger="gridflow.shutdown"):
        assert await bounded("leaving the group", stubborn(), 0.05) is False
    assert "leaving the group took over" in caplog.text
    assert "abandoned" in caplog.text
    await asyncio.wait_for(stubborn_exited.wait(), 5.0)  # it was told, and went its way


async def test_a_step_that_fails_raises_its_error() -> None:
    async def broken() -> None:
        raise RuntimeError("broker said no")

    with pytest.raises(RuntimeError, match="broker said no"):
        await bounded("a failing step", broken(), 5.0)


async def test_cancelling_the_caller_cancels_the_step() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def step() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    caller = asyncio.create_task(bounded("a step", step(), 60.0))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.wait_for(cancelled.wait(), 5.0)
