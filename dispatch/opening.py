"""From a received report to a case: open a new one, or join the open case it repeats."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from app.cases.events import EventType, append_case_event
from app.cases.queries import open_case_for_device
from app.cases.states import CaseStatus, TimerKind
from app.models import Case, Category, Report, SlaPolicy
from app.platform.uow import UnitOfWork
from app.policies.document import PolicySet, policy_set
from dispatch import timers
from dispatch.assignment import offer_case
from dispatch.context import DispatchContext

ACTOR = "system:dispatcher"


class UnknownReport(LookupError):
    """The event names a report that is not in the database: a poison message."""


def located(ctx: DispatchContext, report: Report) -> tuple[str, int]:
    """The grid a new case belongs to, and the grid-set version that placed it there.

    A report is located on intake; if a new grid set has gone live since, the case is placed by
    the live set instead, so dispatch and neighbours use one consistent version.
    """
    return ctx.place(report.grid_code, report.grid_set_version, report.lon, report.lat)


def merged_data(report: Report) -> dict[str, Any]:
    """ReportMerged: a repeated alert joins the device's open case."""
    return {"report_id": report.id, "source": report.source, "device_id": report.device_id}


def new_case(ctx: DispatchContext, report: Report, category: Category, now: datetime) -> Case:
    """The case a report opens, as a new row (every column set), not yet offered."""
    grid_code, grid_set_version = located(ctx, report)
    return Case(
        id=str(uuid.uuid4()),
        category=report.category,
        grid_code=grid_code,
        grid_set_version=grid_set_version,
        status=CaseStatus.REPORTED,
        priority=category.priority,
        department=category.department,  # a department's category goes to its queue
        escalation_level=0,
        lon=report.lon,
        lat=report.lat,
        source_device_id=report.device_id,
        assignee_worker_id=None,
        seq=0,
        paused_at=None,
        pause_kind=None,
        head_hash=None,
        created_at=report.created_at,  # its clocks run from the report's intake
        updated_at=now,
        resolved_at=None,
        closed_at=None,
    )


def opened_data(report: Report, case: Case, due: dict[TimerKind, datetime]) -> dict[str, Any]:
    """CaseOpened, with when the report was received (its clocks run from then) and the
    clocks' due times."""
    return {
        "report_id": report.id,
        "source": report.source,
        "reported_at": report.created_at.isoformat(),
        "category": case.category,
        "grid": case.grid_code,
        "grid_set_version": case.grid_set_version,
        "lon": case.lon,
        "lat": case.lat,
        "priority": case.priority,
        "department": case.department,
        "on_site_due_at": due[TimerKind.ON_SITE].isoformat(),
        "close_due_at": due[TimerKind.CLOSE].isoformat(),
    }


def policy_of(policies: PolicySet, report: Report) -> tuple[Category, SlaPolicy]:
    """The category and policy a report's case is opened under; UnknownReport if it has none
    (the message cannot be dispatched, now or on a retry)."""
    category = policies.categories.get(report.category)
    policy = policies.policy(report.category, category.priority) if category else None
    if category is None or policy is None:
        raise UnknownReport(f"category {report.category} of report {report.id} has no policy")
    return category, policy


async def dispatch_report(uow: UnitOfWork, ctx: DispatchContext, report_id: str) -> None:
    """One report (dispatch/batch.py does many at once, to the same effect)."""
    report = await uow.session.get(Report, report_id)
    if report is None:
        raise UnknownReport(report_id)
    if report.case_id is not None:
        return
    now = ctx.clock.now()
    if report.device_id is not None:
        existing = await open_case_for_device(uow.session, report.device_id, report.category)
        if existing is not None:
            report.case_id = existing.id
            data = merged_data(report)
            append_case_event(
                uow, existing, EventType.REPORT_MERGED, actor=ACTOR, now=now, data=data
            )
            return
    category, policy = policy_of(await policy_set(uow), report)
    case = new_case(ctx, report, category, now)
    uow.session.add(case)
    await uow.session.flush()
    report.case_id = case.id
    due = timers.arm_clocks(uow, ctx, policy, case_id=case.id, start=case.created_at)
    data = opened_data(report, case, due)
    append_case_event(uow, case, EventType.CASE_OPENED, actor=ACTOR, now=now, data=data)
    await offer_case(uow, ctx, case, actor=ACTOR, fresh_start=True)  # nobody refused yet
