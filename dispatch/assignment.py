"""Choosing a worker and offering a case.

Candidates (`candidates`): on-duty workers with room under their capacity. A case of a category
owned by a department goes to that department's queue: its workers, wherever they are. Any other
case goes to grid workers (no department): from the case's grid, then the grids that touch it,
then the rest of its street, in the live grid set (a case opened under an older grid set is
placed again by its location in the live one). Within a tier, workers with the category's
skill first, then the nearest by a fresh reported location, then the least loaded. The choice
is deterministic. Workers who already declined, let an offer of this case expire, handed it
back or had it taken away on escalation are skipped, so the case moves on to the next one.
"""

from __future__ import annotations

import math
import uuid
from datetime import timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.events import EventType, append_case_event
from app.core.models import Case, Category, SlaTimer, Task, Worker
from app.core.policies import policy_for
from app.core.states import (
    ACTIVE_TASK,
    AWAITING_OFFER,
    HANDED_BACK,
    CaseStatus,
    TaskStatus,
    TimerKind,
    TimerState,
)
from dispatch import timers
from dispatch.context import DispatchContext
from dispatch.workers import open_tasks
from geo import haversine_m

DISTANCE_STEP_M = 100.0  # distances within the same 100 m rank as equal


def _tiers(ctx: DispatchContext, case: Case) -> tuple[list[ColumnElement[bool]], dict[str, int]]:
    """Where to look, in order, and each grid's nearness to the case (0: its own grid).

    A department's case: that department's workers. Otherwise grid workers of the case's grid
    in the live set, then of the grids that touch it (nearest first), then of its street."""
    if case.department is not None:
        return [Worker.department == case.department], {}
    home, _ = ctx.place(case.grid_code, case.grid_set_version, case.lon, case.lat)
    index = ctx.grids.index
    near = list(index.neighbours(home)) if index is not None else []
    grid_worker = Worker.department.is_(None)
    tiers: list[ColumnElement[bool]] = [grid_worker & (Worker.grid_code == home)]
    if near:
        tiers.append(grid_worker & Worker.grid_code.in_(near))
    if len(home) >= 9:
        tiers.append(
            grid_worker
            & Worker.grid_code.startswith(home[:9])
            & Worker.grid_code.not_in([home, *near])
        )
    return tiers, {code: i for i, code in enumerate([home, *near])}


async def candidates(
    session: AsyncSession, ctx: DispatchContext, case: Case, exclude: set[str]
) -> list[Worker]:
    """On-duty workers with room for another task, best first.

    The case's department, or tier by tier (the case's grid, the grids that touch it, the rest
    of its street); within a tier, those with the category's skill first, then by distance from
    the worker's location when it is fresh (reported within `sla.location_fresh_s`; stale or
    unknown locations rank after every fresh one), then open tasks against capacity, then the
    grid's nearness, then id.
    """
    category = await session.get(Category, case.category)
    skill = category.skill if category is not None else None
    tiers, order = _tiers(ctx, case)
    # Counted per candidate through the tasks.worker_id index, never over all tasks.
    load = (
        select(func.count())
        .select_from(Task)
        .where(Task.worker_id == Worker.id, Task.status.in_(ACTIVE_TASK))
        .correlate(Worker)
        .scalar_subquery()
    )
    now = ctx.clock.now()
    fresh_after = now - timedelta(seconds=ctx.sla.location_fresh_s)

    def rank(worker: Worker, open_tasks: int) -> tuple[int, float, float, int, str]:
        fresh = (
            worker.location_at is not None
            and worker.location_at >= fresh_after
            and worker.lon is not None
            and worker.lat is not None
        )
        steps = math.inf
        if fresh:
            assert worker.lon is not None and worker.lat is not None
            metres = haversine_m(case.lon, case.lat, worker.lon, worker.lat)
            steps = float(int(metres // DISTANCE_STEP_M))
        return (
            0 if skill is None or skill in (worker.skills or ()) else 1,
            steps,
            open_tasks / max(worker.capacity, 1),
            order.get(worker.grid_code, len(order)),
            worker.id,
        )

    for tier in tiers:
        rows = await session.execute(select(Worker, load).where(Worker.on_duty.is_(True), tier))
        found = [(rank(w, n), w) for w, n in rows if w.id not in exclude and n < w.capacity]
        if found:
            return [w for _, w in sorted(found, key=lambda pair: pair[0])]
    return []


async def _available(session: AsyncSession, worker_id: str, case: Case) -> Worker | None:
    """`worker_id` if on duty, under capacity and of the case's kind (its department, or a grid
    worker), whatever tier they are in."""
    worker = await session.get(Worker, worker_id)
    if worker is None or not worker.on_duty or worker.department != case.department:
        return None
    return worker if await open_tasks(session, worker_id) < worker.capacity else None


async def previous_refusers(session: AsyncSession, case_id: str) -> set[str]:
    rows = await session.scalars(
        select(Task.worker_id).where(
            Task.case_id == case_id,
            Task.status.in_(HANDED_BACK),
        )
    )
    return set(rows)


async def offer_case(
    session: AsyncSession,
    ctx: DispatchContext,
    case: Case,
    *,
    actor: str,
    fresh_start: bool = False,
    prefer: str | None = None,
) -> Task | None:
    """Offer `case` to the best candidate (`prefer`, when that worker is a candidate: rework
    goes back to whoever did the work), arming the acceptance deadline.

    With nobody available the case waits (status unchanged), a DispatchFailed event is appended
    and a retry timer armed; the retry starts fresh, so earlier refusers are asked again.
    """
    now = ctx.clock.now()
    exclude = set() if fresh_start else await previous_refusers(session, case.id)
    pool = await candidates(session, ctx, case, exclude)
    if not pool:
        case.assignee_worker_id = None
        if case.status not in AWAITING_OFFER:
            case.status = CaseStatus.REPORTED
        await append_case_event(
            session,
            case,
            EventType.DISPATCH_FAILED,
            actor=actor,
            now=now,
            data={"reason": "no_available_worker", "retry_in_s": ctx.sla.redispatch_retry_s},
        )
        pending = await session.scalar(
            select(func.count())
            .select_from(SlaTimer)
            .where(
                SlaTimer.case_id == case.id,
                SlaTimer.kind == TimerKind.REDISPATCH,
                SlaTimer.state == TimerState.ARMED,
            )
        )
        if not pending:
            timers.arm_after(
                session,
                case_id=case.id,
                kind=TimerKind.REDISPATCH,
                seconds=ctx.sla.redispatch_retry_s,
                now=now,
            )
        return None
    worker = next((w for w in pool if w.id == prefer), None)
    if worker is None and prefer is not None:
        worker = await _available(session, prefer, case)
    worker = worker or pool[0]
    policy = await policy_for(session, case.category, case.priority)
    accept_s = policy.accept_s if policy else 600
    task = Task(
        id=str(uuid.uuid4()),
        case_id=case.id,
        worker_id=worker.id,
        status=TaskStatus.OFFERED,
        offered_at=now,
        accept_due_at=now + timedelta(seconds=accept_s),
    )
    session.add(task)
    await session.flush()
    case.status = CaseStatus.DISPATCHED
    case.assignee_worker_id = worker.id
    timers.arm(
        session,
        case_id=case.id,
        task_id=task.id,
        kind=TimerKind.ACCEPT,
        due_at=task.accept_due_at,
        now=now,
        goal_s=accept_s,
    )
    await append_case_event(
        session,
        case,
        EventType.TASK_OFFERED,
        actor=actor,
        now=now,
        data={
            "task_id": task.id,
            "worker_id": worker.id,
            "worker_name": worker.name,
            "worker_grid": worker.grid_code,
            "department": worker.department,
            "accept_due_at": task.accept_due_at.isoformat(),
        },
    )
    return task
