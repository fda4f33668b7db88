"""Nothing changes but the speed: one scenario run twice, its intake dispatched one message at
a time (dispatch/opening.py, through the ORM) in one world and in batches (dispatch/batch.py) in
the other, must leave the same history in both.

The scenario, on the injected clock: a few hundred resident reports and camera alerts over a
small patch of the demo city where workers are few and some have one slot (so offers run out
and cases wait for a retry), department cases (the road crews' queue, verified by an
inspector), repeated alerts that merge into the device's open case, declines, offers left to
expire, arrivals and resolutions, feedback, and clocks that warn, breach and escalate. Workers'
choices are drawn from a seeded generator keyed by the report that opened the case, so both
worlds act alike although their ids differ. Compared per case (keyed by its first report): the
event types in order with their data (ids of rows left out, workers' ids kept), the assignee,
status, priority and escalation level, and every timer's kind, due time and state.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.cases.states import ACTIVE_TASK, CaseStatus, ReportSource, TaskStatus
from app.intake.service import Location, NewReport, submit_alert, submit_report
from app.models import Case, CaseEvent, Device, Report, SlaTimer, Task, Worker
from app.platform.errors import AppError
from dispatch import commands
from dispatch.commands import (
    AcceptTask,
    ArriveOnSite,
    DeclineTask,
    GiveFeedback,
    ResolveTask,
    VerifyCase,
)
from tests.dispatch.world import World, dispatch, world

STREET = "330106001"  # one street of the demo city: its first community's grids get the work
ROUNDS = 6
PER_ROUND = 45  # intake items per round: 270 in all
CATEGORIES = [
    ("garbage_overflow", 5),
    ("illegal_parking", 3),
    ("fire_lane_blocked", 2),
    ("road_damage", 2),
    ("sla_drill", 3),
    ("other", 1),
]
# Ids of rows differ between the worlds; what they point at is compared through the rest.
ROW_IDS = {"task_id", "report_id", "from_task_id"}


async def thin_out(w: World) -> None:
    """Few workers in the patch: every other grid worker off duty, the rest with one or two
    slots; the road crews keep theirs."""
    async with w.runtime.db.transaction() as uow:
        workers = list(
            await uow.session.scalars(
                select(Worker).where(Worker.grid_code.startswith(STREET)).order_by(Worker.id)
            )
        )
        for n, worker in enumerate(workers):
            if worker.department is None:
                worker.on_duty = n % 2 == 0
                worker.capacity = 1 + n % 3 // 2


def patch_points(w: World) -> list[tuple[float, float]]:
    index = w.runtime.grids.require()
    units = sorted((g for g in index.units if g.code.startswith(STREET)), key=lambda g: g.code)
    points = []
    for grid in units[:12]:
        p = grid.geometry.representative_point()
        points.append((p.x, p.y))
    return points


async def intake(w: World, rng: random.Random, round_no: int, points: list[Any]) -> None:
    """One round of reports and alerts, a second of clock apart."""
    devices = ["cam-001", "cam-002", "cam-004", "bin-005"]
    weights = [c for _, c in CATEGORIES]
    for n in range(PER_ROUND):
        w.clock.advance(1)
        tag = f"{round_no:02d}-{n:03d}"
        async with w.runtime.db.transaction() as uow:
            if rng.random() < 0.3:
                device_id = rng.choice(devices)
                device = await uow.session.get(Device, device_id)
                assert device is not None
                lon, lat = points[devices.index(device_id) % len(points)]
                category = (
                    "fire_lane_blocked" if device_id.startswith("cam") else "garbage_overflow"
                )
                await submit_alert(
                    uow,
                    w.runtime.grids,
                    w.runtime.categories,
                    w.clock,
                    device=device,
                    external_id=tag,
                    category=category,
                    location=Location(lat, lon),
                    observed_at=w.clock.now(),
                    confidence=0.9,
                )
            else:
                category = rng.choices([c for c, _ in CATEGORIES], weights)[0]
                lon, lat = rng.choice(points)
                await submit_report(
                    uow,
                    w.runtime.grids,
                    w.runtime.categories,
                    w.clock,
                    w.runtime.photos,
                    NewReport(
                        f"res-{n % 17}",
                        category,
                        tag,
                        Location(lat + rng.uniform(-2e-4, 2e-4), lon),
                    ),
                )


async def labels(w: World) -> dict[str, str]:
    """Each case's label: the tag of the report or alert that opened it."""
    async with w.runtime.db.reader() as s:
        rows = await s.execute(
            select(Report.case_id, Report.description, Report.external_id)
            .where(Report.case_id.is_not(None))
            .order_by(Report.created_at)
        )
        out: dict[str, str] = {}
        for case_id, description, external_id in rows:
            out.setdefault(case_id, external_id or description)
        return out


async def act(w: World, round_no: int) -> None:
    """Workers answer their offers, work accepted tasks, inspectors verify, residents rate:
    each choice drawn from a generator seeded by the case's label and the round."""
    names = await labels(w)
    async with w.runtime.db.reader() as s:
        tasks = list(
            await s.execute(
                select(Task, Case)
                .join(Case, Case.id == Task.case_id)
                .where(Task.status.in_(ACTIVE_TASK))
            )
        )
        verifying = list(await s.scalars(select(Case).where(Case.status == CaseStatus.VERIFYING)))
        resolved = list(
            await s.execute(
                select(Case, Report)
                .join(Report, Report.case_id == Case.id)
                .where(Case.status == CaseStatus.RESOLVED, Report.source == ReportSource.RESIDENT)
            )
        )
    tasks.sort(key=lambda tc: names[tc[1].id])
    for task, case in tasks:
        pick = random.Random(f"{names[case.id]}/{round_no}/{task.status}").random()
        command: Any = None
        if task.status == TaskStatus.OFFERED:
            if pick < 0.2:
                command = DeclineTask(task.id, task.worker_id, "不在附近")
            elif pick < 0.75:
                command = AcceptTask(task.id, task.worker_id)
            # else: left to expire
        elif task.status == TaskStatus.ACCEPTED and pick < 0.6:
            command = ArriveOnSite(task.id, task.worker_id, case.lon, case.lat)
        elif task.status == TaskStatus.ON_SITE and pick < 0.7:
            command = ResolveTask(task.id, task.worker_id, "处理完毕")
        if command is not None:
            await run(w, names[case.id], command)
        w.clock.advance(1)
    for case in sorted(verifying, key=lambda c: names[c.id]):
        pick = random.Random(f"{names[case.id]}/{round_no}/verify").random()
        await run(w, names[case.id], VerifyCase(case.id, "operator:ops", None, pick < 0.7, "核查"))
    seen: set[str] = set()
    for case, report in sorted(resolved, key=lambda cr: names[cr[0].id]):
        if case.id in seen or report.reporter_id is None:
            continue
        seen.add(case.id)
        pick = random.Random(f"{names[case.id]}/{round_no}/feedback").random()
        if pick < 0.6:
            command = GiveFeedback(report.id, report.reporter_id, pick < 0.45, 4, None)
            await run(w, names[case.id], command)


async def run(w: World, label: str, command: Any) -> None:
    """Carry out a command; one the engine refuses (a task that expired meanwhile) is
    recorded, and the two worlds must refuse the same ones."""
    try:
        async with w.runtime.db.transaction() as uow:
            await commands.handle(uow, w.ctx, command)
    except AppError as exc:
        w.refusals.append((label, type(command).__name__, exc.code))


async def let_time_pass(w: World, seconds: float) -> None:
    """Move the clock in steps, firing every timer that falls due (expiries, warnings,
    breaches, escalation steps, retries, feedback windows)."""
    step = 20.0
    moved = 0.0
    while moved < seconds:
        w.clock.advance(step)
        moved += step
        while await w.engine.sweep_once():
            pass


async def history(w: World) -> dict[str, Any]:
    names = await labels(w)
    out: dict[str, Any] = {}
    async with w.runtime.db.reader() as s:
        cases = list(await s.scalars(select(Case)))
        for case in cases:
            events = await s.scalars(
                select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)
            )
            timers = await s.scalars(
                select(SlaTimer).where(SlaTimer.case_id == case.id).order_by(SlaTimer.id)
            )
            out[names.get(case.id, case.id)] = {
                "case": (
                    case.status,
                    case.assignee_worker_id,
                    case.priority,
                    case.escalation_level,
                    case.grid_code,
                    case.department,
                    case.created_at,
                    case.seq,
                ),
                "events": [(e.seq, e.type, e.actor, e.occurred_at, scrub(e.data)) for e in events],
                "timers": [
                    (t.kind, t.due_at, t.state, t.fired_at, t.goal_s, t.step, t.action)
                    for t in timers
                ],
            }
    return out


def scrub(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in ROW_IDS}


async def scenario(w: World) -> dict[str, Any]:
    await thin_out(w)
    points = patch_points(w)
    rng = random.Random(20261201)
    for round_no in range(ROUNDS):
        await intake(w, rng, round_no, points)
        await dispatch(w)
        await act(w, round_no)
        await let_time_pass(w, 240)
    async with w.runtime.db.reader() as s:
        load = {wid: n for wid, n in await s.execute(select(Worker.id, Worker.open_tasks))}
        active = {}
        for (wid,) in await s.execute(select(Task.worker_id).where(Task.status.in_(ACTIVE_TASK))):
            active[wid] = active.get(wid, 0) + 1
    # The counter the offers take slots from matches the tasks actually held.
    assert {k: v for k, v in load.items() if v} == active
    return await history(w)


async def test_batched_and_one_by_one_leave_the_same_history(
    tmp_path: Path, template_data: Path
) -> None:
    async with world(tmp_path, template_data, "one", batched=False) as one:
        expected = await scenario(one)
    async with world(tmp_path, template_data, "batched", batched=True) as many:
        got = await scenario(many)
    assert len(expected) > 150  # cases (merged alerts share one)
    kinds = {e[1] for h in expected.values() for e in h["events"]}
    for kind in (
        "ReportMerged",
        "DispatchFailed",
        "TaskDeclined",
        "TaskExpired",
        "SlaWarning",
        "SlaBreached",
        "CaseEscalated",
        "CaseClosed",
        "CaseReopened",
    ):
        assert kind in kinds, f"the scenario never produced {kind}"
    assert many.refusals == one.refusals
    assert got.keys() == expected.keys()
    for label, case in expected.items():
        assert got[label] == case, f"case {label} differs"
