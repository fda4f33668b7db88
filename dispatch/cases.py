"""Worker actions, verification and resident feedback: each transition is one function here.

Every function locks the case row (FOR UPDATE on PostgreSQL; SQLite has one writer), checks the
current state, changes it, cancels or arms timers, and appends exactly one event per step. An
impossible transition raises InvalidTransition carrying the current state.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from app.cases.events import EventType, append_case_event
from app.cases.states import CaseStatus, ReportSource, TaskStatus, TimerKind, family
from app.models import Case, Feedback, Photo, Report, Task, Worker
from app.photos.store import CheckedPhoto
from app.platform.errors import (
    CaseNotFound,
    Forbidden,
    InvalidTransition,
    ReportNotFound,
    TaskNotFound,
    TooFarFromCase,
)
from app.platform.uow import UnitOfWork
from app.policies.document import policy_for
from dispatch import pauses, timers
from dispatch.assignment import end_task, offer_case
from dispatch.context import DispatchContext
from dispatch.escalation import after_refusal
from geo import haversine_m

INSPECT = "inspect"  # the skill that makes a worker an inspector (核查员)


async def _task_of(uow: UnitOfWork, task_id: str, worker_id: str) -> tuple[Task, Case]:
    task = await uow.session.get(Task, task_id)
    if task is None:
        raise TaskNotFound(f"task {task_id} does not exist")
    if task.worker_id != worker_id:
        raise Forbidden("this task belongs to another worker")
    case = await uow.session.get(Case, task.case_id, with_for_update=True)
    await uow.session.refresh(task)
    assert case is not None  # tasks reference cases by foreign key
    return task, case


def _require(task: Task, *allowed: TaskStatus) -> None:
    if task.status not in allowed:
        raise InvalidTransition(
            f"task is {task.status}; this action needs {' or '.join(allowed)}",
            state=task.status,
        )


async def _worker_name(uow: UnitOfWork, worker_id: str) -> str:
    worker = await uow.session.get(Worker, worker_id)
    return worker.name if worker else worker_id


async def accept_task(uow: UnitOfWork, ctx: DispatchContext, task_id: str, worker_id: str) -> Task:
    task, case = await _task_of(uow, task_id, worker_id)
    _require(task, TaskStatus.OFFERED)
    now = ctx.clock.now()
    task.status = TaskStatus.ACCEPTED
    task.accepted_at = now
    case.status = CaseStatus.ACCEPTED
    await timers.cancel(uow, case_id=case.id, now=now, kinds=[TimerKind.ACCEPT], task_id=task.id)
    append_case_event(
        uow,
        case,
        EventType.TASK_ACCEPTED,
        actor=f"worker:{worker_id}",
        now=now,
        data={
            "task_id": task.id,
            "worker_id": worker_id,
            "worker_name": await _worker_name(uow, worker_id),
        },
    )
    return task


async def _hand_back(
    uow: UnitOfWork,
    ctx: DispatchContext,
    task: Task,
    case: Case,
    status: TaskStatus,
    event: EventType,
    reason: str | None,
) -> Task:
    """End the worker's task with a reason and offer the case to the next candidate (the
    worker is left out: see `previous_refusers`)."""
    now = ctx.clock.now()
    await end_task(uow, task, status, now, note=reason)
    actor = f"worker:{task.worker_id}"
    append_case_event(
        uow,
        case,
        event,
        actor=actor,
        now=now,
        data={"task_id": task.id, "worker_id": task.worker_id, "reason": reason},
    )
    if status is TaskStatus.DECLINED:
        await after_refusal(uow, ctx, case)
    await offer_case(uow, ctx, case, actor=actor)
    return task


async def decline_task(
    uow: UnitOfWork, ctx: DispatchContext, task_id: str, worker_id: str, reason: str | None
) -> Task:
    task, case = await _task_of(uow, task_id, worker_id)
    _require(task, TaskStatus.OFFERED)
    await timers.cancel(
        uow, case_id=case.id, now=ctx.clock.now(), kinds=[TimerKind.ACCEPT], task_id=task.id
    )
    return await _hand_back(
        uow, ctx, task, case, TaskStatus.DECLINED, EventType.TASK_DECLINED, reason
    )


async def return_task(
    uow: UnitOfWork, ctx: DispatchContext, task_id: str, worker_id: str, reason: str
) -> Task:
    """回退: the worker hands an accepted case back with a reason; it is offered again with that
    worker left out. The case's on-site and close clocks keep running."""
    task, case = await _task_of(uow, task_id, worker_id)
    _require(task, TaskStatus.ACCEPTED, TaskStatus.ON_SITE)
    case.status = CaseStatus.REPORTED
    case.assignee_worker_id = None
    return await _hand_back(
        uow, ctx, task, case, TaskStatus.RETURNED, EventType.TASK_RETURNED, reason
    )


async def arrive(
    uow: UnitOfWork,
    ctx: DispatchContext,
    task_id: str,
    worker_id: str,
    lon: float,
    lat: float,
) -> Task:
    task, case = await _task_of(uow, task_id, worker_id)
    _require(task, TaskStatus.ACCEPTED)
    distance = haversine_m(lon, lat, case.lon, case.lat)
    limit = ctx.sla.arrive_radius_m
    if distance > limit:
        raise TooFarFromCase(
            f"you are {distance:.0f} m from the case; arrival counts within {limit:.0f} m",
            distance_m=round(distance, 1),
            limit_m=limit,
        )
    now = ctx.clock.now()
    task.status = TaskStatus.ON_SITE
    task.arrived_at = now
    case.status = CaseStatus.ON_SITE
    worker = await uow.session.get(Worker, worker_id)
    if worker is not None:
        worker.lon, worker.lat, worker.location_at = lon, lat, now
    await timers.cancel(uow, case_id=case.id, now=now, kinds=family(TimerKind.ON_SITE))
    append_case_event(
        uow,
        case,
        EventType.WORKER_ARRIVED,
        actor=f"worker:{worker_id}",
        now=now,
        data={"task_id": task.id, "worker_id": worker_id, "distance_m": round(distance, 1)},
    )
    return task


async def resolve(
    uow: UnitOfWork,
    ctx: DispatchContext,
    task_id: str,
    worker_id: str,
    note: str,
    photos: list[CheckedPhoto],
) -> Task:
    """Mark the work done. A category whose policy has a verify clock waits for an inspector
    (核查); otherwise a case nobody reported in person (a sensor's) closes at once and a
    resident's case waits for feedback, closing by itself when the window passes."""
    task, case = await _task_of(uow, task_id, worker_id)
    _require(task, TaskStatus.ON_SITE)
    now = ctx.clock.now()
    await end_task(uow, task, TaskStatus.RESOLVED, now, note=note)
    for p in photos:
        uow.session.add(
            Photo(
                id=str(uuid.uuid4()),
                task_id=task.id,
                sha256=p.sha256,
                content_type=p.content_type,
                width=p.width,
                height=p.height,
                size_bytes=len(p.data),
                created_at=now,
            )
        )
    case.status = CaseStatus.RESOLVED
    case.resolved_at = now
    await timers.cancel(
        uow, case_id=case.id, now=now, kinds=family(TimerKind.ON_SITE, TimerKind.CLOSE)
    )
    actor = f"worker:{worker_id}"
    await pauses.end_with_the_work(uow, ctx, case, actor=actor, ended_by="resolved")
    policy = await policy_for(uow, case.category, case.priority)
    data: dict[str, object] = {
        "task_id": task.id,
        "worker_id": worker_id,
        "note": note,
        "photos": len(photos),
    }
    if policy is not None and policy.verify_s is not None:
        case.status = CaseStatus.VERIFYING
        due = timers.arm_clocks(
            uow, ctx, policy, case_id=case.id, start=now, clocks=[TimerKind.VERIFY]
        )
        data["verify_due_at"] = due[TimerKind.VERIFY].isoformat()
    append_case_event(uow, case, EventType.CASE_RESOLVED, actor=actor, now=now, data=data)
    if case.status == CaseStatus.RESOLVED:
        await _feedback_or_close(uow, ctx, case, actor)
    return task


async def _feedback_or_close(uow: UnitOfWork, ctx: DispatchContext, case: Case, actor: str) -> None:
    """After the work is done (and verified, where required): a resident's case waits for
    feedback; a case nobody reported in person closes."""
    now = ctx.clock.now()
    residents = await uow.session.scalar(
        select(func.count())
        .select_from(Report)
        .where(Report.case_id == case.id, Report.source == ReportSource.RESIDENT)
    )
    if residents:
        timers.arm_after(
            uow,
            case_id=case.id,
            kind=TimerKind.FEEDBACK,
            seconds=ctx.sla.feedback_window_s,
            now=now,
        )
    else:
        await close_case(uow, ctx, case, actor=actor, reason="resolved_without_resident")


async def verify(
    uow: UnitOfWork,
    ctx: DispatchContext,
    case_id: str,
    *,
    actor: str,
    inspector_id: str | None,
    passed: bool,
    note: str,
    lon: float | None,
    lat: float | None,
) -> Case:
    """核查: an inspector's verdict on a resolved case. An inspector is a worker with the
    `inspect` skill, on site (within `sla.arrive_radius_m`) and not the worker who did the work;
    an operator may record a verdict too. Passed: the case is resolved (feedback, or closed).
    Failed: rework (返工) — the case reopens with fresh on-site and close clocks and is offered
    first to the worker who did the work."""
    inspector = await uow.session.get(Worker, inspector_id) if inspector_id is not None else None
    if inspector_id is not None and inspector is None:
        raise Forbidden(f"no worker has the id {inspector_id!r}")
    if inspector is not None and INSPECT not in (inspector.skills or ()):
        raise Forbidden("only inspectors (workers with the inspect skill) verify cases")
    case = await uow.session.get(Case, case_id, with_for_update=True)
    if case is None:
        raise CaseNotFound(f"case {case_id} does not exist")
    await uow.session.refresh(case)
    if case.status != CaseStatus.VERIFYING:
        raise InvalidTransition(
            f"verification needs a case waiting for it; it is {case.status}", state=case.status
        )
    worked = await uow.session.scalar(
        select(Task)
        .where(Task.case_id == case.id, Task.status == TaskStatus.RESOLVED)
        .order_by(Task.resolved_at.desc(), Task.id)
        .limit(1)
    )
    data: dict[str, object] = {"passed": passed, "note": note}
    if inspector is not None:
        if worked is not None and worked.worker_id == inspector.id:
            raise Forbidden("an inspector cannot verify their own work")
        if lon is None or lat is None:
            raise TooFarFromCase("an inspector verifies on site: send your location")
        distance = haversine_m(lon, lat, case.lon, case.lat)
        if distance > ctx.sla.arrive_radius_m:
            raise TooFarFromCase(
                f"you are {distance:.0f} m from the case; verify within "
                f"{ctx.sla.arrive_radius_m:.0f} m",
                distance_m=round(distance, 1),
                limit_m=ctx.sla.arrive_radius_m,
            )
        data["distance_m"] = round(distance, 1)
    now = ctx.clock.now()
    await timers.cancel(uow, case_id=case.id, now=now, kinds=family(TimerKind.VERIFY))
    await pauses.end_with_the_work(uow, ctx, case, actor=actor, ended_by="verified")
    if passed:
        case.status = CaseStatus.RESOLVED
        append_case_event(uow, case, EventType.VERIFICATION_PASSED, actor=actor, now=now, data=data)
        await _feedback_or_close(uow, ctx, case, actor)
        return case
    case.status = CaseStatus.REOPENED
    case.resolved_at = None
    data["worker_id"] = worked.worker_id if worked is not None else None
    append_case_event(uow, case, EventType.CASE_REWORKED, actor=actor, now=now, data=data)
    policy = await policy_for(uow, case.category, case.priority)
    if policy is not None:
        timers.arm_clocks(uow, ctx, policy, case_id=case.id, start=now)
    await offer_case(
        uow,
        ctx,
        case,
        actor=actor,
        fresh_start=True,
        prefer=worked.worker_id if worked is not None else None,
    )
    return case


async def close_case(
    uow: UnitOfWork, ctx: DispatchContext, case: Case, *, actor: str, reason: str
) -> None:
    now = ctx.clock.now()
    await pauses.end_with_the_work(uow, ctx, case, actor=actor, ended_by="closed")
    case.status = CaseStatus.CLOSED
    case.closed_at = now
    await timers.cancel(uow, case_id=case.id, now=now, kinds=list(TimerKind))
    append_case_event(
        uow, case, EventType.CASE_CLOSED, actor=actor, now=now, data={"reason": reason}
    )


async def give_feedback(
    uow: UnitOfWork,
    ctx: DispatchContext,
    report_id: str,
    resident_id: str,
    *,
    satisfied: bool,
    score: int,
    comment: str | None,
) -> Case:
    """The resident's verdict on a resolved case: satisfied closes it, otherwise it reopens
    and is dispatched again with fresh on-site and close clocks."""
    report = await uow.session.get(Report, report_id)
    if report is None or report.source != ReportSource.RESIDENT:
        raise ReportNotFound(f"report {report_id} does not exist")
    if report.reporter_id != resident_id:
        raise Forbidden("this report belongs to another resident")
    if report.case_id is None:
        raise InvalidTransition("the report has no case yet", state="received")
    case = await uow.session.get(Case, report.case_id, with_for_update=True)
    assert case is not None
    await uow.session.refresh(case)
    if case.status != CaseStatus.RESOLVED:
        raise InvalidTransition(
            f"feedback needs a resolved case; it is {case.status}", state=case.status
        )
    given = await uow.session.scalar(
        select(Feedback.id).where(
            Feedback.report_id == report.id, Feedback.created_at >= case.resolved_at
        )
    )
    if given is not None:
        raise InvalidTransition("feedback on this resolution was already given", state=case.status)
    now = ctx.clock.now()
    actor = f"resident:{resident_id}"
    uow.session.add(
        Feedback(
            id=str(uuid.uuid4()),
            report_id=report.id,
            case_id=case.id,
            satisfied=satisfied,
            score=score,
            comment=comment,
            created_at=now,
        )
    )
    append_case_event(
        uow,
        case,
        EventType.FEEDBACK_RECEIVED,
        actor=actor,
        now=now,
        data={"report_id": report.id, "satisfied": satisfied, "score": score},
    )
    if satisfied:
        await close_case(uow, ctx, case, actor=actor, reason="resident_satisfied")
        return case
    case.status = CaseStatus.REOPENED
    case.resolved_at = None
    await timers.cancel(uow, case_id=case.id, now=now, kinds=[TimerKind.FEEDBACK])
    append_case_event(
        uow,
        case,
        EventType.CASE_REOPENED,
        actor=actor,
        now=now,
        data={"report_id": report.id, "comment": comment},
    )
    policy = await policy_for(uow, case.category, case.priority)
    if policy is not None:
        timers.arm_clocks(uow, ctx, policy, case_id=case.id, start=now)
    await offer_case(uow, ctx, case, actor=actor, fresh_start=True)
    return case
