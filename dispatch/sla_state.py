"""Where a case's clocks stand: each clock's goal, due time, time counted and left in its
calendar, and whether it runs, is paused, was met or was breached. A pure reading of the
case's timer rows (the newest run of each clock: a reopened case starts again), for the read
models, the live feed and anyone else who shows a case."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from app.cases.states import SHOWN_CLOCKS, TimerKind, TimerState
from app.models import SlaPolicy, SlaTimer
from dispatch.context import DispatchContext

# How a stopped timer shows its clock: met when cancelled, breached when fired, else running.
SHOWN_AS = {
    TimerState.CANCELLED: "met",
    TimerState.FIRED: "breached",
    TimerState.PAUSED: "paused",
}


@dataclass(frozen=True)
class ClockReading:
    clock: str
    calendar: str
    goal_s: int
    due_at: datetime
    elapsed_s: float
    remaining_s: float  # negative once overdue
    state: str  # running, paused, met, breached
    paused: bool
    breached: bool


@dataclass(frozen=True)
class DueTimes:
    accept_due_at: datetime | None = None  # while an offer is open
    on_site_due_at: datetime | None = None
    close_due_at: datetime | None = None


def due_times(timers: Iterable[SlaTimer]) -> DueTimes:
    """The latest due time of each clock (`timers` in id order; a reopened case has new ones);
    the acceptance deadline only while an offer is open."""
    accept = on_site = close = None
    for t in timers:
        if t.kind is TimerKind.ACCEPT and t.state is TimerState.ARMED:
            accept = t.due_at
        elif t.kind is TimerKind.ON_SITE:
            on_site = t.due_at
        elif t.kind is TimerKind.CLOSE:
            close = t.due_at
    return DueTimes(accept, on_site, close)


def clock_readings(
    ctx: DispatchContext, policy: SlaPolicy | None, timers: Iterable[SlaTimer]
) -> list[ClockReading]:
    """Each shown clock of a case, from its timers in id order (`timers` may hold other kinds)."""
    if policy is None:
        return []
    newest = {t.kind: t for t in timers if t.kind in SHOWN_CLOCKS}
    now = ctx.clock.now()
    out = []
    for kind in SHOWN_CLOCKS:
        timer = newest.get(kind)
        if timer is None or (kind is TimerKind.ACCEPT and timer.state is not TimerState.ARMED):
            continue  # the accept clock is shown while an offer is open
        calendar_name = "24x7" if kind is TimerKind.ACCEPT else policy.calendar
        calendar = ctx.calendar(calendar_name)
        goal = timer.goal_s  # as armed; older rows: the policy's
        if goal is None:
            goal = {
                TimerKind.ACCEPT: policy.accept_s,
                TimerKind.ON_SITE: policy.on_site_s,
                TimerKind.CLOSE: policy.close_s,
                TimerKind.VERIFY: policy.verify_s or 0,
            }[kind]
        state = SHOWN_AS.get(timer.state, "running")
        at = (timer.fired_at or now) if state == "met" else now
        due = timer.due_at
        if state == "paused":
            remaining = timer.paused_remaining_s or 0.0
        else:
            remaining = calendar.elapsed(at, due) if at <= due else -calendar.elapsed(due, at)
        out.append(
            ClockReading(
                clock=kind.value,
                calendar=calendar_name,
                goal_s=goal,
                due_at=due,
                elapsed_s=round(goal - remaining, 3),
                remaining_s=round(remaining, 3),
                state=state,
                paused=state == "paused",
                breached=state == "breached" or remaining < 0,
            )
        )
    return out
