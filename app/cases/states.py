"""The vocabulary of the case model: every state a case, task or timer can be in, and the named
sets that say what a state means ("open", "joinable by an alert", "pausable", ...).

This is the one place a state is spelled. The model columns are typed with these enums
(`app/models.py`), and intake, the engine, the SLA clock, the figures and the read models
ask the predicates below instead of listing states of their own.

Case: reported → dispatched → accepted → on_site → resolved → closed; a declined or expired
offer returns the case to dispatched with a new offer (or reported if nobody could be offered);
a resident who is not satisfied reopens a resolved case, which is dispatched again. A category
whose policy requires verification (核查) goes from on_site to verifying first: an inspector
passes it (→ resolved) or sends it back as rework (返工: → reopened, dispatched again).
"""

from __future__ import annotations

from enum import StrEnum


class CaseStatus(StrEnum):
    REPORTED = "reported"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    ON_SITE = "on_site"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"
    VERIFYING = "verifying"  # resolved by the worker, waiting for the inspector (核查)


class TaskStatus(StrEnum):
    OFFERED = "offered"
    ACCEPTED = "accepted"
    ON_SITE = "on_site"
    RESOLVED = "resolved"
    DECLINED = "declined"
    EXPIRED = "expired"
    RETURNED = "returned"  # 回退: handed back by the worker, with a reason
    CANCELLED = "cancelled"  # taken away: the case was re-offered on escalation


class TimerKind(StrEnum):
    ACCEPT = "accept"  # an offer's acceptance window
    ON_SITE = "on_site"  # worker on site, from the case opening
    CLOSE = "close"  # case resolved, from the case opening
    FEEDBACK = "feedback"  # resident feedback window after resolution
    REDISPATCH = "redispatch"  # retry when nobody could be offered the case
    ON_SITE_WARNING = "on_site_warn"  # `warn_at` of the on-site clock has passed
    CLOSE_WARNING = "close_warn"  # `warn_at` of the close clock has passed
    VERIFY = "verify"  # the inspector's verdict, from the resolution
    VERIFY_WARNING = "verify_warn"
    ON_SITE_ESCALATION = "on_site_esc"  # one step of the policy's escalation chain (`step`)
    CLOSE_ESCALATION = "close_esc"
    VERIFY_ESCALATION = "verify_esc"

    @property
    def clock(self) -> TimerKind:
        """The clock a warning or escalation step belongs to (a clock is its own)."""
        return _CLOCK_OF.get(self, self)


class TimerState(StrEnum):
    ARMED = "armed"
    FIRED = "fired"
    CANCELLED = "cancelled"  # its clock was met or no longer applies
    PAUSED = "paused"  # the case's clocks are stopped; `paused_remaining_s` is what is left
    FAILED = "failed"  # handling it raised; set aside so it cannot stall the clock for others


class PauseKind(StrEnum):
    WAITING_FOR_RESIDENT = "waiting_for_resident"
    EXTENSION = "extension"  # 延期: approved, with reason and approver


class ReportSource(StrEnum):
    RESIDENT = "resident"
    SENSOR = "sensor"


# --- what a case's state means -------------------------------------------------------------

# Open: every state but closed. A case stays open while it waits for feedback or an inspector.
OPEN = frozenset(CaseStatus) - {CaseStatus.CLOSED}
# A repeated alert of the same device and category joins the device's open case, whatever it
# waits for (an inspector's check included), rather than opening a second one.
JOINABLE_BY_ALERT = OPEN
# Clocks can be stopped while the work is still to be done or checked.
PAUSABLE = OPEN - {CaseStatus.RESOLVED}
# Nobody has arrived yet: the on-site clock runs.
BEFORE_ON_SITE = frozenset(
    {CaseStatus.REPORTED, CaseStatus.DISPATCHED, CaseStatus.ACCEPTED, CaseStatus.REOPENED}
)
# The work is done (or waits for its check): the close clock is met.
WORK_DONE = frozenset({CaseStatus.RESOLVED, CaseStatus.CLOSED, CaseStatus.VERIFYING})
# Nobody holds an offer of it: the case waits to be offered (a retry timer may be armed).
AWAITING_OFFER = frozenset({CaseStatus.REPORTED, CaseStatus.REOPENED})


# --- what a task's state means -------------------------------------------------------------

# Held by its worker: counted against the worker's capacity.
ACTIVE_TASK = frozenset({TaskStatus.OFFERED, TaskStatus.ACCEPTED, TaskStatus.ON_SITE})
# Ended without the work: declined, let expire, handed back or taken away. Such a worker is left
# out when the case is offered again, and the first offer was not right first time.
HANDED_BACK = frozenset(
    {TaskStatus.DECLINED, TaskStatus.EXPIRED, TaskStatus.RETURNED, TaskStatus.CANCELLED}
)
# Refusals that count towards the policy's `max_refusals`.
REFUSED = frozenset({TaskStatus.DECLINED, TaskStatus.EXPIRED})
# What an escalation's re-offer takes away from the worker who has not arrived.
REOFFERABLE = frozenset({TaskStatus.OFFERED, TaskStatus.ACCEPTED})


# --- clocks and timers ---------------------------------------------------------------------

# Each SLA clock with its warning and its escalation steps.
CLOCK_FAMILY = {
    TimerKind.ON_SITE: (TimerKind.ON_SITE_WARNING, TimerKind.ON_SITE_ESCALATION),
    TimerKind.CLOSE: (TimerKind.CLOSE_WARNING, TimerKind.CLOSE_ESCALATION),
    TimerKind.VERIFY: (TimerKind.VERIFY_WARNING, TimerKind.VERIFY_ESCALATION),
}
_CLOCK_OF = {kind: clock for clock, kinds in CLOCK_FAMILY.items() for kind in kinds}
# The deadlines a case can be overdue on.
DEADLINES = tuple(CLOCK_FAMILY)
# The clocks a case shows (the accept clock while an offer is open).
SHOWN_CLOCKS = (TimerKind.ACCEPT, *DEADLINES)
# Timers still counting or stopped for a pause: they can be cancelled when their clock is met.
LIVE_TIMER = frozenset({TimerState.ARMED, TimerState.PAUSED})
# A deadline that was armed and not met: still running, or fired as a breach.
UNMET_TIMER = frozenset({TimerState.ARMED, TimerState.FIRED})


def family(*clocks: TimerKind) -> list[TimerKind]:
    """These clocks with their warnings and escalation steps."""
    return [k for c in clocks for k in (c, *CLOCK_FAMILY[c])]


def clock_running(clock: TimerKind, status: CaseStatus) -> bool:
    """Whether a case in `status` has not yet met `clock`."""
    if clock is TimerKind.ON_SITE:
        return status in BEFORE_ON_SITE
    if clock is TimerKind.CLOSE:
        return status not in WORK_DONE
    return status == CaseStatus.VERIFYING
