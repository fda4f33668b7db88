"""Case and task states, and timer kinds.

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
    ON_SITE_WARNING = "on_site_warn"  # `sla.warn_at` of the on-site clock has passed
    CLOSE_WARNING = "close_warn"  # `sla.warn_at` of the close clock has passed
    VERIFY = "verify"  # the inspector's verdict, from the resolution
    VERIFY_WARNING = "verify_warn"
    ON_SITE_ESCALATION = "on_site_esc"  # one step of the policy's escalation chain (`step`)
    CLOSE_ESCALATION = "close_esc"
    VERIFY_ESCALATION = "verify_esc"

    @property
    def clock(self) -> TimerKind:
        """The clock a warning or escalation step belongs to (a clock is its own)."""
        return _CLOCK_OF.get(self, self)


# Each SLA clock with its warning and its escalation steps.
CLOCK_FAMILY = {
    TimerKind.ON_SITE: (TimerKind.ON_SITE_WARNING, TimerKind.ON_SITE_ESCALATION),
    TimerKind.CLOSE: (TimerKind.CLOSE_WARNING, TimerKind.CLOSE_ESCALATION),
    TimerKind.VERIFY: (TimerKind.VERIFY_WARNING, TimerKind.VERIFY_ESCALATION),
}
_CLOCK_OF = {kind: clock for clock, kinds in CLOCK_FAMILY.items() for kind in kinds}


def family(*clocks: TimerKind) -> list[TimerKind]:
    """These clocks with their warnings and escalation steps."""
    return [k for c in clocks for k in (c, *CLOCK_FAMILY[c])]


class TimerState(StrEnum):
    ARMED = "armed"
    FIRED = "fired"
    CANCELLED = "cancelled"
    PAUSED = "paused"  # the case's clocks are stopped; `paused_remaining_s` is what is left


class PauseKind(StrEnum):
    WAITING_FOR_RESIDENT = "waiting_for_resident"
    EXTENSION = "extension"  # 延期: approved, with reason and approver


ACTIVE_TASK = (TaskStatus.OFFERED, TaskStatus.ACCEPTED, TaskStatus.ON_SITE)
