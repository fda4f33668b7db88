"""The batched path: a fetched batch of received reports dispatched in a fixed number of
statements, with the same cases, offers, timers and events as dispatching them one after
another in the batch's order (dispatch/opening.py `dispatch_report`;
tests/dispatch/test_differential.py runs the two side by side).

Data moves per batch, rules stay per case. One query each reads the reports, the open cases
their alerts may join, and every worker the new cases' tiers could reach; categories and
policies come from the process's cache (app/policies/document.py `PolicyBook`). Then each report is
decided in order, in memory, by the functions the one-case path uses (ranking, clocks, offers,
events), each case seeing the slots taken by the cases before it. Then the writes: the workers'
slots (their rows locked in id order and checked: if another dispatcher took one meanwhile, the
batch raises SlotsTaken and is applied again from fresh reads, so nobody is over-filled), the
new cases, tasks and timers as multi-row INSERTs, the reports' cases, and the case events with
their outbox rows when the unit of work flushes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.cases.events import EventType, append_case_event
from app.cases.queries import open_cases_for_devices
from app.cases.states import TimerKind
from app.models import Case, Report, SlaPolicy, SlaTimer, Task, Worker
from app.platform.bulk import insert_rows
from app.platform.uow import UnitOfWork
from app.policies.document import PolicySet, policy_set
from dispatch import ranking, timers
from dispatch.assignment import nobody_data, offer
from dispatch.context import DispatchContext
from dispatch.opening import ACTOR, UnknownReport, merged_data, new_case, opened_data, policy_of
from dispatch.timers import TimerRow

_CASES = cast(Table, Case.__table__)
_TASKS = cast(Table, Task.__table__)
_TIMERS = cast(Table, SlaTimer.__table__)
_REPORTS = cast(Table, Report.__table__)
_WORKERS = cast(Table, Worker.__table__)
_SET_CASE = (
    update(_REPORTS).where(_REPORTS.c.id == bindparam("rid")).values(case_id=bindparam("cid"))
)
_TAKE_SLOTS = (
    update(_WORKERS)
    .where(_WORKERS.c.id == bindparam("wid"))
    .values(open_tasks=_WORKERS.c.open_tasks + bindparam("n"))
)


class SlotsTaken(Exception):
    """Another dispatcher took a slot this batch counted on; apply the batch again."""


def _row(obj: Any, table: Table) -> dict[str, Any]:
    """A new ORM object's column values, for a plain INSERT (autoincrement ids left out)."""
    return {
        c.key: getattr(obj, c.key)
        for c in table.columns
        if not (c.primary_key and c.autoincrement is True)
    }


@dataclass
class _Batch:
    """What a batch has decided so far, and will write."""

    ctx: DispatchContext
    policies: PolicySet
    now: datetime
    cases: list[Case] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    timers: list[TimerRow] = field(default_factory=list)
    report_cases: list[dict[str, str]] = field(default_factory=list)
    taken: Counter[str] = field(default_factory=Counter)  # slots taken per worker


async def dispatch_reports(
    uow: UnitOfWork, ctx: DispatchContext, report_ids: Sequence[str]
) -> None:
    """DispatchReport for each report, in this order, in `uow`."""
    session = uow.session
    found = await session.scalars(select(Report).where(Report.id.in_(report_ids)))
    reports = {r.id: r for r in found}
    for report_id in report_ids:
        if report_id not in reports:
            raise UnknownReport(report_id)
    todo = [reports[i] for i in dict.fromkeys(report_ids) if reports[i].case_id is None]
    if not todo:
        return
    batch = _Batch(ctx, await policy_set(uow), ctx.clock.now())
    pairs = {(r.device_id, r.category) for r in todo if r.device_id is not None}
    joinable = await open_cases_for_devices(session, pairs, lock=True) if pairs else {}

    # First which reports open a case (a repeated alert joins its device's open case, one
    # opened earlier in the batch included), so one query can read every worker they may need.
    opens: dict[str, tuple[Case, SlaPolicy]] = {}
    opened_by_device: set[tuple[str, str]] = set()
    for report in todo:
        if report.device_id is not None:
            key = (report.device_id, report.category)
            if key in joinable or key in opened_by_device:
                continue
            opened_by_device.add(key)
        category, policy = policy_of(batch.policies, report)
        opens[report.id] = (new_case(ctx, report, category, batch.now), policy)
    searches = {
        case.id: ranking.search_for(ctx, case, batch.policies.skill(case.category))
        for case, _ in opens.values()
    }
    roster = ranking.Roster(await _workers(session, list(searches.values())))

    # Then every report in order, as dispatch_report would.
    for report in todo:
        opened = opens.get(report.id)
        if opened is None:
            assert report.device_id is not None
            target = joinable[(report.device_id, report.category)]
            batch.report_cases.append({"rid": report.id, "cid": target.id})
            data = merged_data(report)
            append_case_event(
                uow, target, EventType.REPORT_MERGED, actor=ACTOR, now=batch.now, data=data
            )
            continue
        case, policy = opened
        _open(uow, batch, report, case, policy, searches[case.id], roster)
        if report.device_id is not None:
            joinable[(report.device_id, report.category)] = case  # later alerts join it

    await _take_slots(uow, batch.taken)
    await insert_rows(session, _CASES, [_row(c, _CASES) for c in batch.cases])
    await insert_rows(session, _TASKS, batch.tasks)
    await insert_rows(session, _TIMERS, batch.timers)
    await session.execute(_SET_CASE, batch.report_cases)
    for report in todo:
        session.expire(report, ["case_id"])  # written above, not through the session


def _open(
    uow: UnitOfWork,
    batch: _Batch,
    report: Report,
    case: Case,
    policy: SlaPolicy,
    search: ranking.Search,
    roster: ranking.Roster,
) -> None:
    """Open `case` for `report` under `policy` and offer it (offer_case with nobody having
    refused yet)."""
    ctx, now = batch.ctx, batch.now
    rows, due = timers.clock_timers(ctx, policy, case_id=case.id, start=case.created_at)
    batch.cases.append(case)
    batch.timers.extend(rows)
    batch.report_cases.append({"rid": report.id, "cid": case.id})
    data = opened_data(report, case, due)
    append_case_event(uow, case, EventType.CASE_OPENED, actor=ACTOR, now=now, data=data)
    fresh_since = ranking.fresh_after(ctx, now)
    pool = ranking.pick(
        search, case, roster, exclude=set(), fresh_since=fresh_since, taken=batch.taken
    )
    if not pool:
        # A new case waits with no retry timer armed yet (assignment._nobody).
        append_case_event(
            uow, case, EventType.DISPATCH_FAILED, actor=ACTOR, now=now, data=nobody_data(ctx)
        )
        batch.timers.append(
            timers.timer(
                case_id=case.id,
                kind=TimerKind.REDISPATCH,
                due_at=now + timedelta(seconds=ctx.sla.redispatch_retry_s),
                now=now,
            )
        )
        return
    worker = pool[0]
    batch.taken[worker.id] += 1
    task, timer, data = offer(case, worker, policy.accept_s, now)
    batch.tasks.append(task)
    batch.timers.append(timer)
    append_case_event(uow, case, EventType.TASK_OFFERED, actor=ACTOR, now=now, data=data)


async def _workers(session: AsyncSession, searches: list[ranking.Search]) -> list[Worker]:
    """Every on-duty worker with a free slot in any tier of these searches, in one query."""
    if not searches:
        return []
    departments: set[str] = set()
    grids: set[str] = set()
    streets: set[str] = set()
    for search in searches:
        for tier in search.tiers:
            if tier.department is not None:
                departments.add(tier.department)
            elif tier.street is not None:
                streets.add(tier.street)
            else:
                grids |= tier.grids
    reach: list[ColumnElement[bool]] = []
    if departments:
        reach.append(Worker.department.in_(sorted(departments)))
    if grids or streets:
        street = func.substr(Worker.grid_code, 1, ranking.STREET_DIGITS)
        reach.append(
            Worker.department.is_(None)
            & or_(Worker.grid_code.in_(sorted(grids)), street.in_(sorted(streets)))
        )
    rows = await session.scalars(
        select(Worker).where(
            Worker.on_duty.is_(True), Worker.open_tasks < Worker.capacity, or_(*reach)
        )
    )
    return list(rows)


async def _take_slots(uow: UnitOfWork, taken: Counter[str]) -> None:
    """Take the slots the batch's offers need: the workers' rows locked in id order (so two
    batches never wait on each other in a circle), checked, then moved."""
    if not taken:
        return
    ids = sorted(taken)
    rows = await uow.session.execute(
        select(_WORKERS.c.id, _WORKERS.c.open_tasks, _WORKERS.c.capacity)
        .where(_WORKERS.c.id.in_(ids))
        .order_by(_WORKERS.c.id)
        .with_for_update()
    )
    for worker_id, open_tasks, capacity in rows:
        if open_tasks + taken[worker_id] > capacity:
            raise SlotsTaken(worker_id)
    await uow.session.execute(_TAKE_SLOTS, [{"wid": i, "n": taken[i]} for i in ids])
