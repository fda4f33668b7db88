"""The SLA clock against another transaction holding a case: only PostgreSQL has several
writers. Runs in the services suite (make unit-services), where PostgreSQL is required."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from app.cases.states import TimerState
from app.models import Case, SlaTimer
from app.platform.db import Database
from tests.dispatch.test_sla import report_in_single_worker_grid, types
from tests.harness import PG_ADMIN_URL, Harness


@pytest.fixture(autouse=True)
def _needs_postgres() -> None:
    if not PG_ADMIN_URL:
        pytest.fail("run through deploy/local/with-services.sh (make unit-services)")


async def test_a_timer_whose_case_is_held_is_left_for_the_next_sweep(h: Harness) -> None:
    """Everything else locks a case and then its timers. A sweeper that held a due timer and
    waited for its case closed a deadlock with such a transaction (PostgreSQL then aborted one
    of them, and the timer was marked failed: the case never escalated). It never waits: the
    timer stays armed and the next sweep fires it."""
    _, case_id, _ = await report_in_single_worker_grid(h)
    await h.offered_task(case_id)
    h.clock.advance(61)  # the offer's 60 s have passed
    other = Database(h.settings.database_url)  # another process's connection
    try:
        async with other.transaction() as uow:
            held = await uow.session.get(Case, case_id, with_for_update=True)
            assert held is not None
            assert await asyncio.wait_for(h.sweep(), timeout=30) == 0
            # ... and the holder goes on to the case's timers without meeting the sweeper
            armed = await uow.session.scalars(
                select(SlaTimer.id)
                .where(SlaTimer.case_id == case_id, SlaTimer.state == TimerState.ARMED)
                .with_for_update()
            )
            assert list(armed)
    finally:
        await other.dispose()
    assert await h.sweep() == 1
    assert types(await h.case(case_id))[-2:] == ["TaskExpired", "TaskOffered"]
