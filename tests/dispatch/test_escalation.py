"""Escalation chains: each step once, through a restart and with two sweepers; the grid leader
called after too many refusals; raising the priority; policies per priority."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import websockets
from sqlalchemy import select

from app.models import CaseEvent, SlaTimer
from app.runtime import Runtime
from dispatch import sla
from tests.dispatch.test_sla import report_in_single_worker_grid, types
from tests.harness import Harness


async def policies(h: Harness) -> dict[str, Any]:
    r = await h.client.get("/v1/admin/policies", headers=h.auth("admin", "root"))
    assert r.status_code == 200
    return dict(r.json())


async def put_policies(h: Harness, doc: dict[str, Any]) -> Any:
    return await h.client.put("/v1/admin/policies", json=doc, headers=h.auth("admin", "root"))


def policy(doc: dict[str, Any], category: str, priority: int = 0) -> dict[str, Any]:
    return next(
        p for p in doc["policies"] if p["category"] == category and p["priority"] == priority
    )


async def escalations(h: Harness) -> Counter[tuple[str, Any, Any]]:
    """(case, what, which) for every breach and escalation step recorded."""
    async with h.runtime.db.reader() as s:
        rows = await s.execute(
            select(CaseEvent.case_id, CaseEvent.type, CaseEvent.data).where(
                CaseEvent.type.in_(["SlaBreached", "CaseEscalated", "SlaWarning"])
            )
        )
        return Counter((c, t, d.get("step", d.get("clock"))) for c, t, d in rows)


async def breached_cases(h: Harness, n: int) -> list[str]:
    """`n` fire-lane cases in grids of their own, each accepted and never reached."""
    ids = []
    for i in range(1, n + 1):
        _, case_id, _ = await report_in_single_worker_grid(h, n=i)
        task = await h.offered_task(case_id)
        r = await h.client.post(
            f"/v1/tasks/{task['id']}/accept", headers=h.auth("worker", task["worker_id"])
        )
        assert r.status_code == 200
        ids.append(case_id)
    return ids


async def second_runtime(h: Harness) -> Runtime:
    """Another dispatcher process on the same database (a restart, or a second instance)."""
    other = Runtime(h.settings, clock=h.clock)
    await other.reload_grids()
    return other


async def test_each_step_fires_once_through_a_restart(h: Harness) -> None:
    ids = await breached_cases(h, 2)
    h.clock.advance(5 * 60 + 1)
    assert await h.sweep() == 6  # per case: on-site warning, breach, grid leader
    first = await escalations(h)
    await h.runtime.stop()  # the dispatcher goes away with timers still armed ...
    other = await second_runtime(h)  # ... and a new one takes over the same rows
    try:
        assert await sla.sweep(other.db, other.ctx) == 0  # nothing fires twice
        h.clock.advance(10 * 60)
        # per case: re-offer (7 min), close warning (12), close breach and street office (15)
        assert await sla.sweep(other.db, other.ctx) == 8
        assert await sla.sweep(other.db, other.ctx) == 0
        async with other.db.reader() as s:
            rows = await s.execute(
                select(CaseEvent.case_id, CaseEvent.type, CaseEvent.data).where(
                    CaseEvent.type == "CaseEscalated"
                )
            )
            steps = Counter((c, d["step"]) for c, _, d in rows)
    finally:
        await other.stop()
        await h.runtime.start()
    assert all(v == 1 for v in first.values())
    assert steps == {(c, step): 1 for c in ids for step in (0, 1, 2)}


async def test_two_sweepers_share_the_work_and_fire_each_step_once(h: Harness) -> None:
    ids = await breached_cases(h, 3)
    h.clock.advance(15 * 60 + 1)  # every clock and step of all three cases is due
    other = await second_runtime(h)
    try:
        fired = await asyncio.gather(
            sla.sweep(h.runtime.db, h.runtime.ctx), sla.sweep(other.db, other.ctx)
        )
    finally:
        await other.db.dispose()
    # per case: 2 warnings, 2 breaches, 3 steps
    assert sum(fired) == 3 * 7
    counted = await escalations(h)
    assert all(v == 1 for v in counted.values()), counted
    assert len(counted) == 3 * 7
    async with h.runtime.db.reader() as s:
        states = Counter(await s.scalars(select(SlaTimer.state).where(SlaTimer.case_id.in_(ids))))
    assert states["failed"] == 0


async def test_too_many_refusals_call_the_grid_leader_once(h: Harness) -> None:
    doc = await policies(h)
    policy(doc, "garbage_overflow")["max_refusals"] = 2
    assert (await put_policies(h, doc)).status_code == 200
    _, case_id, code = await report_in_single_worker_grid(h, "garbage_overflow", n=2)
    refused: list[str] = []
    for _ in range(3):
        task = await h.offered_task(case_id, not_worker=refused[-1] if refused else None)
        r = await h.client.post(
            f"/v1/tasks/{task['id']}/decline",
            json={"reason": "忙"},
            headers=h.auth("worker", task["worker_id"]),
        )
        assert r.status_code == 200
        refused.append(task["worker_id"])
    case = await h.case(case_id)
    calls = [e for e in case["timeline"] if e["type"] == "CaseEscalated"]
    assert len(calls) == 1  # at the second refusal, not again at the third
    leader = h.runtime.grids.require().get(code)
    assert leader is not None
    assert calls[0]["data"] == {
        "reason": "refusals",
        "refusals": 2,
        "action": "notify_grid_leader",
        "to": leader.responsible,
        "escalation_level": 1,
        "priority": 3,
    }
    assert types(case) == [
        "CaseOpened",
        "TaskOffered",
        "TaskDeclined",
        "TaskOffered",
        "TaskDeclined",
        "CaseEscalated",  # at the second refusal, before the case moves on
        "TaskOffered",
        "TaskDeclined",
        "TaskOffered",
    ]


async def test_a_policy_per_priority_and_raising_the_priority(h: Harness) -> None:
    doc = await policies(h)
    default = policy(doc, "other")
    default.update(calendar="24x7", on_site_s=600, close_s=1200, escalation=[])
    # The category's cases start at priority 4, which has a policy of its own.
    own = {
        **default,
        "priority": 4,
        "on_site_s": 300,
        "escalation": [{"clock": "close", "after_s": 60, "action": "raise_priority"}],
    }
    doc["policies"].append(own)
    assert (await put_policies(h, doc)).status_code == 200
    _, case_id, _ = await report_in_single_worker_grid(h, "other", n=3)
    case = await h.case(case_id)
    assert case["priority"] == 4
    assert {c["clock"]: c["goal_s"] for c in case["sla"]} == {
        "accept": default["accept_s"],
        "on_site": 300,  # the priority-4 policy, not the default's 600
        "close": 1200,
    }
    h.clock.advance(1260)
    assert await h.sweep() >= 5  # warnings and breaches of both clocks, then the step
    case = await h.case(case_id)
    raised = [e["data"] for e in case["timeline"] if e["type"] == "CaseEscalated"]
    assert raised == [
        {
            "clock": "close",
            "step": 0,
            "action": "raise_priority",
            "priority_from": 4,
            "escalation_level": 3,  # after the on-site and close breaches
            "priority": 3,
        }
    ]
    assert case["priority"] == 3
    # Running clocks keep the goals they were armed with.
    assert {c["clock"]: c["goal_s"] for c in case["sla"]}["on_site"] == 300


async def test_the_feed_carries_each_cases_sla_state(h: Harness) -> None:
    (case_id,) = await breached_cases(h, 1)
    h.clock.advance(5 * 60 + 30)
    assert await h.sweep() == 3
    url = await h.feed_url(since=0)
    async with asyncio.timeout(20), websockets.connect(url) as ws:
        async for raw in ws:
            event = json.loads(raw)
            if event.get("case_id") == case_id and event["type"] == "CaseEscalated":
                break
    sla_state = {c["clock"]: c for c in event["sla"]}
    assert sla_state["on_site"] | {"due_at": None} == {
        "clock": "on_site",
        "calendar": "24x7",
        "goal_s": 300,
        "due_at": None,
        "elapsed_s": 330.0,
        "remaining_s": -30.0,
        "state": "breached",
        "paused": False,
        "breached": True,
    }
    assert sla_state["close"]["state"] == "running" and sla_state["close"]["remaining_s"] == 570
    assert event["sla"] == (await h.case(case_id))["sla"]  # as GET /v1/cases/{id} shows it


async def test_expiries_count_as_refusals(h: Harness) -> None:
    doc = await policies(h)
    policy(doc, "garbage_overflow")["max_refusals"] = 2
    assert (await put_policies(h, doc)).status_code == 200
    _, case_id, _ = await report_in_single_worker_grid(h, "garbage_overflow", n=2)
    first = await h.offered_task(case_id)
    r = await h.client.post(
        f"/v1/tasks/{first['id']}/decline", json={}, headers=h.auth("worker", first["worker_id"])
    )
    assert r.status_code == 200
    await h.offered_task(case_id, not_worker=first["worker_id"])
    h.clock.advance(policy(doc, "garbage_overflow")["accept_s"] + 1)
    assert await h.sweep() == 1  # the second offer expires: the second refusal
    case = await h.case(case_id)
    assert types(case)[-3:] == ["TaskExpired", "CaseEscalated", "TaskOffered"]
    assert case["timeline"][-2]["data"]["refusals"] == 2
