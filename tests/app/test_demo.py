"""`gridflow demo` against a running server: every case closes, and the drill shows warnings,
breaches and each kind of escalation.

The server's clock is the harness's manual clock, moved at real pace while the ordinary cases are
worked; once they have all closed, a second at a time (ten times real pace, so the demo's workers
keep within the drill's 30-second accept window) with the sweeper run each time, instead of
waiting a real minute.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from app.demo import Demo
from tests.harness import Harness


async def run_on_the_harness_clock(h: Harness, demo: Demo) -> int:
    """Run `demo` against `h`, moving the harness's clock as the module docstring says."""

    async def tick() -> None:
        for _ in range(3000):  # bounded: at most 300 simulated seconds
            others = demo.our_cases - demo.drill_cases
            if demo.drill_cases and others and others <= demo.closed:
                h.clock.advance(1)  # the drill's turn: ten times real time
                await h.sweep()
            else:
                h.clock.advance(0.1)  # real time, while the other cases are worked
            await asyncio.sleep(0.1)

    ticker = asyncio.create_task(tick())
    try:
        return await demo.run()
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


async def test_the_demo_shows_warnings_breaches_and_escalations(
    h: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = Demo(h.settings, h.base_url, cases=6, timeout_s=60, clock=h.clock.now)

    assert await run_on_the_harness_clock(h, demo) == 0
    out = capsys.readouterr().out
    assert "all 9 cases reached closed" in out  # 6 residents, 2 cameras, the drill
    drill = [line for line in out.splitlines() if "sla_drill" in line]
    for expected in (
        "SlaWarning",
        "SlaBreached",
        "notify_grid_leader →",
        "reoffer: taken from",
        "notify_street_office →",
        "raise_priority 3 → 2",
        "CaseClosed",
    ):
        assert any(expected in line for line in drill), (expected, drill)
    assert "CaseReworked" in out and "VerificationPassed" in out  # the road repair's 核查
