"""Case and task states, and timer kinds.

Case: reported → dispatched → accepted → on_site → resolved → closed; a declined or expired
offer returns the case to dispatched with a new offer (or reported if nobody could be offered);
a resident who is not satisfied reopens a resolved case, which is dispatched again.
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


class TaskStatus(StrEnum):
    OFFERED = "offered"
    ACCEPTED = "accepted"
    ON_SITE = "on_site"
    RESOLVED = "resolved"
    DECLINED = "declined"
    EXPIRED = "expired"
    RETURNED = "returned"  # 回退: handed back by the worker, with a reason
    CANCELLED = "cancelled"


class TimerKind(StrEnum):
    ACCEPT = "accept"  # an offer's acceptance window
    ON_SITE = "on_site"  # worker on site, from the case opening
    CLOSE = "close"  # case resolved, from the case opening
    FEEDBACK = "feedback"  # resident feedback window after resolution
    REDISPATCH = "redispatch"  # retry when nobody could be offered the case
    ON_SITE_WARNING = "on_site_warn"  # `sla.warn_at` of the on-site clock has passed
    CLOSE_WARNING = "close_warn"  # `sla.warn_at` of the close clock has passed


class TimerState(StrEnum):
    ARMED = "armed"
    FIRED = "fired"
    CANCELLED = "cancelled"
    PAUSED = "paused"  # the case's clocks are stopped; `paused_remaining_s` is what is left


class PauseKind(StrEnum):
    WAITING_FOR_RESIDENT = "waiting_for_resident"
    EXTENSION = "extension"  # 延期: approved, with reason and approver


ACTIVE_TASK = (TaskStatus.OFFERED, TaskStatus.ACCEPTED, TaskStatus.ON_SITE)
