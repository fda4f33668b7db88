"""Deadlines with an injected clock: offers expire and move on, breaches fire exactly once."""

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError

from app.cases.states import TimerState
from app.models import Case, OutboxMessage, SlaTimer, Worker
from app.platform import topics
from app.platform.bus import Message
from dispatch import sla
from tests.harness import Harness


async def report_in_single_worker_grid(
    h: Harness, category: str = "fire_lane_blocked", n: int = 1
) -> tuple[dict[str, Any], str, str]:
    grid = h.runtime.grids.require().units[n]  # units[1], [2], [3]: one worker each
    centre = grid.geometry.representative_point()
    report = await h.report("erin", category, point={"lat": centre.y, "lon": centre.x})
    case_id = await h.case_of(report["id"])
    return report, case_id, grid.code


def types(case: dict[str, Any]) -> list[str]:
    return [e["type"] for e in case["timeline"]]


async def test_expired_offer_goes_to_another_worker(h: Harness) -> None:
    _, case_id, code = await report_in_single_worker_grid(h)
    first = await h.offered_task(case_id)
    assert first["worker_id"] == f"w-{code}-1"
    h.clock.advance(59)
    assert await h.sweep() == 0  # not yet: the fire-lane offer holds for 60 s
    h.clock.advance(2)
    assert await h.sweep() == 1
    case = await h.case(case_id)
    assert types(case) == ["CaseOpened", "TaskOffered", "TaskExpired", "TaskOffered"]
    second = case["task"]
    assert second["status"] == "offered" and second["worker_id"] != first["worker_id"]
    neighbours = h.runtime.grids.require().neighbours(code)
    worker_grid = case["timeline"][-1]["data"]["worker_grid"]
    assert worker_grid in neighbours
    # The first worker can no longer accept the expired offer.
    r = await h.client.post(
        f"/v1/tasks/{first['id']}/accept", headers=h.auth("worker", first["worker_id"])
    )
    assert r.status_code == 409 and r.json()["state"] == "expired"


async def test_missed_on_site_deadline_breaches_once_and_escalates_by_the_chain(
    h: Harness,
) -> None:
    _, case_id, code = await report_in_single_worker_grid(h)
    task = await h.offered_task(case_id)
    r = await h.client.post(
        f"/v1/tasks/{task['id']}/accept", headers=h.auth("worker", task["worker_id"])
    )
    assert r.status_code == 200
    h.clock.advance(5 * 60 + 1)
    # the 80 % warning, the breach, and the chain's first step: the grid leader (网格长)
    assert await h.sweep() == 3
    case = await h.case(case_id)
    assert types(case)[-3:] == ["SlaWarning", "SlaBreached", "CaseEscalated"]
    breach, step = case["timeline"][-2]["data"], case["timeline"][-1]["data"]
    assert breach["clock"] == "on_site" and breach["escalation_level"] == 1
    leader = h.runtime.grids.require().get(code)
    assert leader is not None and leader.responsible
    assert step == {
        "clock": "on_site",
        "step": 0,
        "action": "notify_grid_leader",
        "to": leader.responsible,
        "escalation_level": 2,
        "priority": 1,
    }
    assert case["escalation_level"] == 2
    assert await h.sweep() == 0  # fired once, never again
    listed = await h.client.get(
        "/v1/cases", params={"overdue": "true"}, headers=h.auth("operator", "ops")
    )
    assert [c["id"] for c in listed.json()["items"]] == [case_id]

    h.clock.advance(10 * 60)  # 15 minutes after opening: the close clock too
    # at 7 min the re-offer (the worker who has not arrived loses the case), at 12 the close
    # warning, at 15 its breach and the street office's call
    assert await h.sweep() == 4
    case = await h.case(case_id)
    assert types(case)[-5:] == [
        "CaseEscalated",
        "TaskOffered",
        "SlaWarning",
        "SlaBreached",
        "CaseEscalated",
    ]
    steps = [e["data"] for e in case["timeline"] if e["type"] == "CaseEscalated"]
    assert [s["action"] for s in steps] == [
        "notify_grid_leader",
        "reoffer",
        "notify_street_office",
    ]
    assert steps[1]["from_worker_id"] == task["worker_id"]
    assert steps[2]["to"] == h.runtime.grids.require().path(code)[0].responsible
    assert case["task"]["status"] == "offered" and case["task"]["worker_id"] != task["worker_id"]
    assert case["escalation_level"] == 5
    assert [e["data"]["clock"] for e in case["timeline"] if e["type"] == "SlaBreached"] == [
        "on_site",
        "close",
    ]
    r = await h.client.post(
        f"/v1/tasks/{task['id']}/arrive",
        json={"location": {"lat": 30.2, "lon": 120.1}},
        headers=h.auth("worker", task["worker_id"]),
    )
    assert r.status_code == 409 and r.json()["state"] == "cancelled"


async def test_arrival_in_time_stops_the_on_site_clock(h: Harness) -> None:
    _, case_id, _ = await report_in_single_worker_grid(h)
    task = await h.offered_task(case_id)
    worker = h.auth("worker", task["worker_id"])
    loc = (await h.client.post(f"/v1/tasks/{task['id']}/accept", headers=worker)).json()
    h.clock.advance(4 * 60)
    r = await h.client.post(
        f"/v1/tasks/{task['id']}/arrive", json={"location": loc["location"]}, headers=worker
    )
    assert r.status_code == 200
    h.clock.advance(2 * 60)
    await h.sweep()
    case = await h.case(case_id)
    assert "SlaBreached" not in types(case) and case["escalation_level"] == 0


async def test_arrival_too_far_is_refused(h: Harness) -> None:
    _, case_id, _ = await report_in_single_worker_grid(h)
    task = await h.offered_task(case_id)
    worker = h.auth("worker", task["worker_id"])
    loc = (await h.client.post(f"/v1/tasks/{task['id']}/accept", headers=worker)).json()
    far = {"lat": loc["location"]["lat"] + 0.003, "lon": loc["location"]["lon"]}  # ~330 m
    r = await h.client.post(
        f"/v1/tasks/{task['id']}/arrive", json={"location": far}, headers=worker
    )
    assert r.status_code == 422 and r.json()["error"] == "too_far_from_case"
    assert r.json()["distance_m"] > 200
    assert (await h.case(case_id))["status"] == "accepted"


async def test_decline_moves_to_next_worker(h: Harness) -> None:
    _, case_id, _ = await report_in_single_worker_grid(h, "garbage_overflow", n=2)
    first = await h.offered_task(case_id)
    r = await h.client.post(
        f"/v1/tasks/{first['id']}/decline",
        json={"reason": "在处理别的"},
        headers=h.auth("worker", first["worker_id"]),
    )
    assert r.status_code == 200 and r.json()["status"] == "declined"
    second = await h.offered_task(case_id, not_worker=first["worker_id"])
    assert second["worker_id"] != first["worker_id"]


async def test_impossible_transitions_are_409_with_state(h: Harness) -> None:
    _, case_id, _ = await report_in_single_worker_grid(h, "other", n=3)
    task = await h.offered_task(case_id)
    worker = h.auth("worker", task["worker_id"])
    r = await h.client.post(
        f"/v1/tasks/{task['id']}/resolve", json={"note": "done"}, headers=worker
    )
    assert r.status_code == 409 and r.json() | {"detail": ""} == {
        "error": "invalid_transition",
        "detail": "",
        "state": "offered",
    }
    assert (
        await h.client.post(f"/v1/tasks/{task['id']}/accept", headers=worker)
    ).status_code == 200
    r = await h.client.post(f"/v1/tasks/{task['id']}/accept", headers=worker)
    assert r.status_code == 409 and r.json()["state"] == "accepted"


async def test_unsatisfied_resident_reopens_and_feedback_window_closes(h: Harness) -> None:
    report, case_id, _ = await report_in_single_worker_grid(h, "garbage_overflow")
    resident = h.auth("resident", "erin")

    async def work_it() -> None:
        task = await h.offered_task(case_id)
        worker = h.auth("worker", task["worker_id"])
        loc = (await h.client.post(f"/v1/tasks/{task['id']}/accept", headers=worker)).json()
        await h.client.post(
            f"/v1/tasks/{task['id']}/arrive", json={"location": loc["location"]}, headers=worker
        )
        r = await h.client.post(
            f"/v1/tasks/{task['id']}/resolve", json={"note": "ok"}, headers=worker
        )
        assert r.status_code == 200, r.text

    early = await h.client.post(
        f"/v1/reports/{report['id']}/feedback",
        json={"satisfied": True, "score": 5},
        headers=resident,
    )
    assert early.status_code == 409
    await work_it()
    r = await h.client.post(
        f"/v1/reports/{report['id']}/feedback",
        json={"satisfied": False, "score": 2, "comment": "还是满的"},
        headers=resident,
    )
    assert r.status_code == 200 and r.json()["case_status"] == "dispatched", r.text
    await work_it()
    # No second rating: the feedback window closes the case by itself.
    h.clock.advance(h.settings.sla.feedback_window_s + 1)
    await h.sweep()
    case = await h.case(case_id)
    assert case["status"] == "closed"
    assert case["timeline"][-1]["data"]["reason"] == "feedback_window_elapsed"
    assert types(case).count("CaseResolved") == 2 and "CaseReopened" in types(case)


async def test_nobody_on_duty_waits_and_retries(h: Harness) -> None:
    async with h.runtime.db.transaction() as uow:
        s = uow.session
        await s.execute(update(Worker).values(on_duty=False))
    report = await h.report("frank", "road_damage")
    case_id = await h.case_of(report["id"])
    case = await h.case_where(case_id, lambda c: "DispatchFailed" in types(c))
    assert case["status"] == "reported" and case["task"] is None
    async with h.runtime.db.transaction() as uow:
        s = uow.session
        await s.execute(update(Worker).values(on_duty=True))
    h.clock.advance(h.settings.sla.redispatch_retry_s)
    await h.sweep()
    assert (await h.case(case_id))["task"]["status"] == "offered"


async def test_redelivered_intake_event_is_harmless(h: Harness) -> None:
    report = await h.report("gina")
    case_id = await h.case_of(report["id"])
    engine = h.runtime.engine
    assert engine is not None
    async with h.runtime.db.reader() as s:
        row = await s.scalar(
            select(OutboxMessage)
            .where(OutboxMessage.topic == topics.INTAKE)
            .order_by(OutboxMessage.id.desc())
            .limit(1)
        )
    assert row is not None
    message = Message(row.topic, row.key, row.payload, row.id)
    assert await engine.process(message) is False
    async with h.runtime.db.reader() as s:
        cases = list(await s.scalars(select(Case.id)))
    assert cases == [case_id]


async def test_poison_message_goes_to_dead_letter_and_does_not_block(h: Harness) -> None:
    from app.cases.events import EventEnvelope, EventType, enqueue

    bogus = EventEnvelope(
        type=EventType.REPORT_RECEIVED,
        occurred_at=h.clock.now(),
        actor="test",
        data={"report_id": "missing", "source": "resident", "category": "other", "grid": "x"},
    )
    async with h.runtime.db.transaction() as uow:
        enqueue(uow, topics.INTAKE, "x", bogus)
    report = await h.report("hank")
    await h.case_of(report["id"])  # the good message behind it is still dispatched

    async def dead() -> list[OutboxMessage]:
        async with h.runtime.db.reader() as s:
            return list(
                await s.scalars(
                    select(OutboxMessage).where(OutboxMessage.topic == topics.DEAD_LETTER)
                )
            )

    [letter] = await h.eventually(dead, what="a dead letter")
    assert letter.payload["data"]["original"]["event_id"] == bogus.event_id
    assert "UnknownReport" in letter.payload["data"]["error"]


async def test_outbox_is_pruned_once_done_and_old(h: Harness) -> None:
    from app.cases.events import EventEnvelope, EventType, enqueue

    report = await h.report("ivy")
    await h.offered_task(await h.case_of(report["id"]))
    letter = EventEnvelope(
        type=EventType.REPORT_RECEIVED, occurred_at=h.clock.now(), actor="test", data={}
    )
    async with h.runtime.db.transaction() as uow:
        enqueue(uow, topics.DEAD_LETTER, "x", letter)
    engine = h.runtime.engine
    assert engine is not None

    async def published() -> bool:  # with Kafka, the relay must have sent everything
        async with h.runtime.db.reader() as s:
            return not await s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.sent_at.is_(None), OutboxMessage.topic != topics.DEAD_LETTER)
            )

    if h.settings.bus.kind == "kafka":
        await h.eventually(published, what="the relay to publish")

    assert await engine.prune_outbox() == 0  # done, but not old enough
    h.clock.advance(h.settings.bus.outbox_keep_s + 1)
    assert await engine.prune_outbox() > 0
    async with h.runtime.db.reader() as s:
        left = list(await s.scalars(select(OutboxMessage.topic)))
    if h.settings.bus.kind == "embedded":
        assert left == [topics.DEAD_LETTER]  # the only copy of a dead letter stays
    # The pipeline still works after pruning.
    again = await h.report("ivy")
    await h.offered_task(await h.case_of(again["id"]))


async def test_warnings_come_once_before_each_breach(h: Harness) -> None:
    _, case_id, _ = await report_in_single_worker_grid(h)
    task = await h.offered_task(case_id)
    worker = h.auth("worker", task["worker_id"])
    assert (
        await h.client.post(f"/v1/tasks/{task['id']}/accept", headers=worker)
    ).status_code == 200
    h.clock.advance(4 * 60 - 1)
    assert await h.sweep() == 0  # 80 % of the 5-minute on-site clock is 4 minutes
    h.clock.advance(2)
    assert await h.sweep() == 1
    case = await h.case(case_id)
    warning = case["timeline"][-1]
    assert warning["type"] == "SlaWarning"
    assert warning["data"]["clock"] == "on_site" and warning["data"]["percent"] == 80
    assert case["escalation_level"] == 0  # a warning does not escalate
    assert await h.sweep() == 0  # once
    h.clock.advance(60)
    assert await h.sweep() == 2  # the breach, and the chain's call to the grid leader
    assert types(await h.case(case_id))[-2:] == ["SlaBreached", "CaseEscalated"]
    h.clock.advance(12 * 60 - 5 * 60)  # 12 minutes after opening: 80 % of the close clock
    assert await h.sweep() == 2  # the re-offer due at 7 minutes, then the close warning
    last = (await h.case(case_id))["timeline"][-1]
    assert last["type"] == "SlaWarning" and last["data"]["clock"] == "close"


async def test_a_clock_met_in_time_never_warns(h: Harness) -> None:
    _, case_id, code = await report_in_single_worker_grid(h)
    task = await h.offered_task(case_id)
    worker = h.auth("worker", task["worker_id"])
    await h.client.post(f"/v1/tasks/{task['id']}/accept", headers=worker)
    centre = h.runtime.grids.require().get(code).geometry.representative_point()  # type: ignore[union-attr]
    r = await h.client.post(
        f"/v1/tasks/{task['id']}/arrive",
        json={"location": {"lat": centre.y, "lon": centre.x}},
        headers=worker,
    )
    assert r.status_code == 200
    h.clock.advance(6 * 60)
    assert await h.sweep() == 0  # on site in time: neither warning nor breach
    assert "SlaWarning" not in types(await h.case(case_id))


def clocks(case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["clock"]: c for c in case["sla"]}


async def test_each_clock_shows_goal_elapsed_remaining_and_state(h: Harness) -> None:
    report, case_id, code = await report_in_single_worker_grid(h)
    task = await h.offered_task(case_id)
    offered = clocks(await h.case(case_id))
    assert offered["accept"]["goal_s"] == 60 and offered["accept"]["state"] == "running"
    worker = h.auth("worker", task["worker_id"])
    await h.client.post(f"/v1/tasks/{task['id']}/accept", headers=worker)
    h.clock.advance(120)
    now = clocks(await h.case(case_id))
    assert "accept" not in now  # shown only while an offer is open
    assert now["on_site"] == {
        "clock": "on_site",
        "calendar": "24x7",
        "goal_s": 300,
        "due_at": now["on_site"]["due_at"],
        "elapsed_s": 120.0,
        "remaining_s": 180.0,
        "state": "running",
        "paused": False,
        "breached": False,
    }
    assert (now["close"]["elapsed_s"], now["close"]["remaining_s"]) == (120.0, 780.0)
    h.clock.advance(60)
    centre = h.runtime.grids.require().get(code).geometry.representative_point()  # type: ignore[union-attr]
    await h.client.post(
        f"/v1/tasks/{task['id']}/arrive",
        json={"location": {"lat": centre.y, "lon": centre.x}},
        headers=worker,
    )
    h.clock.advance(600)  # the on-site clock stopped at 3 minutes; the close clock ran on
    await h.sweep()
    later = clocks(await h.case(case_id))
    assert later["on_site"]["state"] == "met" and later["on_site"]["elapsed_s"] == 180.0
    assert later["close"]["state"] == "running" and later["close"]["remaining_s"] == 120.0
    h.clock.advance(180)
    await h.sweep()
    late = clocks(await h.case(case_id))
    assert late["close"]["state"] == "breached" and late["close"]["remaining_s"] == -60.0
    # The resident sees the same clocks on the report.
    mine = await h.client.get(f"/v1/reports/{report['id']}", headers=h.auth("resident", "erin"))
    assert clocks(mine.json())["close"]["state"] == "breached"


async def test_working_hours_clocks_count_only_working_time(h: Harness) -> None:
    friday = datetime(2026, 1, 9, 17, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
    h.clock.advance((friday - h.clock.now()).total_seconds())
    report = await h.report("gus", "garbage_overflow")
    case_id = await h.case_of(report["id"])
    await h.offered_task(case_id)
    h.clock.advance(18.5 * 3600)  # Saturday noon
    on_site = clocks(await h.case(case_id))["on_site"]
    assert on_site["calendar"] == "working_hours"
    assert (on_site["elapsed_s"], on_site["remaining_s"]) == (1800.0, 5400.0)


class _Deadlock(Exception):
    sqlstate = "40P01"  # what the driver's error carries when PostgreSQL breaks a deadlock


async def test_a_timer_that_lost_a_race_stays_armed(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deadlock or serialization failure rolls the work back and says nothing about the
    timer: it fires on the next sweep rather than being marked failed for good."""
    _, case_id, _ = await report_in_single_worker_grid(h)
    await h.offered_task(case_id)
    h.clock.advance(61)
    real = sla.fire

    async def deadlocked(*args: Any) -> None:
        raise DBAPIError("SELECT", None, _Deadlock("deadlock detected"))

    monkeypatch.setattr(sla, "fire", deadlocked)
    assert await h.sweep() == 0
    async with h.runtime.db.reader() as s:
        states = list(await s.scalars(select(SlaTimer.state).where(SlaTimer.case_id == case_id)))
    assert TimerState.FAILED not in states and TimerState.ARMED in states
    monkeypatch.setattr(sla, "fire", real)
    assert await h.sweep() == 1
    assert types(await h.case(case_id))[-2:] == ["TaskExpired", "TaskOffered"]
