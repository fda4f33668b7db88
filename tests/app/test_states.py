"""The vocabulary: what each named set of states means, and that columns hold only members."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlalchemy.exc import StatementError

from app.cases.states import (
    ACTIVE_TASK,
    BEFORE_ON_SITE,
    HANDED_BACK,
    JOINABLE_BY_ALERT,
    OPEN,
    PAUSABLE,
    REFUSED,
    CaseStatus,
    TaskStatus,
    TimerKind,
    clock_running,
    family,
)
from app.models import Case
from tests.harness import Harness


def test_open_is_every_state_but_closed() -> None:
    assert set(CaseStatus) - OPEN == {CaseStatus.CLOSED}
    assert CaseStatus.VERIFYING in OPEN and CaseStatus.VERIFYING in JOINABLE_BY_ALERT


def test_a_resolved_case_has_no_clock_to_pause() -> None:
    assert CaseStatus.RESOLVED not in PAUSABLE and CaseStatus.CLOSED not in PAUSABLE
    assert CaseStatus.VERIFYING in PAUSABLE and CaseStatus.REOPENED in PAUSABLE


def test_task_sets() -> None:
    assert ACTIVE_TASK.isdisjoint(HANDED_BACK)
    assert REFUSED < HANDED_BACK
    assert set(TaskStatus) == ACTIVE_TASK | HANDED_BACK | {TaskStatus.RESOLVED}


@pytest.mark.parametrize(
    ("clock", "status", "running"),
    [
        (TimerKind.ON_SITE, CaseStatus.ACCEPTED, True),
        (TimerKind.ON_SITE, CaseStatus.REOPENED, True),
        (TimerKind.ON_SITE, CaseStatus.ON_SITE, False),
        (TimerKind.CLOSE, CaseStatus.ON_SITE, True),
        (TimerKind.CLOSE, CaseStatus.VERIFYING, False),
        (TimerKind.CLOSE, CaseStatus.RESOLVED, False),
        (TimerKind.VERIFY, CaseStatus.VERIFYING, True),
        (TimerKind.VERIFY, CaseStatus.RESOLVED, False),
    ],
)
def test_clock_running(clock: TimerKind, status: CaseStatus, running: bool) -> None:
    assert clock_running(clock, status) is running
    assert (status in BEFORE_ON_SITE) is clock_running(TimerKind.ON_SITE, status)


def test_a_clock_family_is_the_clock_its_warning_and_its_steps() -> None:
    assert family(TimerKind.CLOSE) == [
        TimerKind.CLOSE,
        TimerKind.CLOSE_WARNING,
        TimerKind.CLOSE_ESCALATION,
    ]
    assert {k.clock for k in family(TimerKind.VERIFY)} == {TimerKind.VERIFY}


async def test_a_state_outside_the_vocabulary_is_refused_by_the_column(h: Harness) -> None:
    with pytest.raises((StatementError, ValueError)):
        async with h.runtime.db.transaction() as uow:
            s = uow.session
            await s.execute(update(Case).values(status="waiting"))
