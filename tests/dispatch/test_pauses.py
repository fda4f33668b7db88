"""Stopping SLA clocks (waiting for the resident, an approved extension) and restarting them
with exactly the time they had left."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.dispatch.test_sla import clocks, report_in_single_worker_grid, types
from tests.harness import Harness

SH = ZoneInfo("Asia/Shanghai")


async def act(h: Harness, case_id: str, action: str, **body: Any) -> Any:
    headers = h.auth("operator", "ops")
    return await h.client.post(f"/v1/cases/{case_id}/{action}", json=body or None, headers=headers)


async def test_a_paused_clock_neither_warns_nor_breaches_and_resumes_exactly(h: Harness) -> None:
    _, case_id, _ = await report_in_single_worker_grid(h)
    task = await h.offered_task(case_id)
    worker = h.auth("worker", task["worker_id"])
    await h.client.post(f"/v1/tasks/{task['id']}/accept", headers=worker)
    h.clock.advance(60)
    r = await act(h, case_id, "pause", kind="waiting_for_resident", reason="居民不在家，约好再来")
    assert r.status_code == 200, r.text
    on_site = clocks(r.json())["on_site"]
    assert on_site["state"] == "paused" and on_site["paused"] is True
    assert on_site["remaining_s"] == 240.0
    h.clock.advance(600)
    assert await h.sweep() == 0  # stopped: no warning, no breach
    r = await act(h, case_id, "resume")
    assert r.status_code == 200
    case = r.json()
    on_site = clocks(case)["on_site"]
    assert on_site["state"] == "running" and on_site["remaining_s"] == 240.0
    due = datetime.fromisoformat(on_site["due_at"])
    assert due == h.clock.now() + timedelta(seconds=240)
    paused, resumed = case["timeline"][-2:]
    assert paused["type"] == "SlaPaused"
    assert paused["data"] == {
        "kind": "waiting_for_resident",
        "reason": "居民不在家，约好再来",
        "approver": "operator:ops",
    }
    assert resumed["type"] == "SlaResumed" and resumed["data"]["paused_s"] == 600.0
    h.clock.advance(241)
    assert await h.sweep() == 3  # the warning it had left, the breach, the grid leader's call
    assert types(await h.case(case_id))[-3:] == ["SlaWarning", "SlaBreached", "CaseEscalated"]


async def test_an_extension_over_a_weekend_costs_working_hours_nothing(h: Harness) -> None:
    friday = datetime(2026, 1, 9, 17, 0, tzinfo=SH)
    h.clock.advance((friday - h.clock.now()).total_seconds())
    report = await h.report("hal", "road_damage")
    case_id = await h.case_of(report["id"])
    await h.offered_task(case_id)
    h.clock.advance(30 * 60)  # 17:30: half an hour of the 2-hour on-site clock used
    r = await act(h, case_id, "pause", kind="extension", reason="需封路审批")
    assert r.status_code == 200
    monday = datetime(2026, 1, 12, 9, 0, tzinfo=SH)
    h.clock.advance((monday - h.clock.now()).total_seconds())
    r = await act(h, case_id, "resume")
    on_site = clocks(r.json())["on_site"]
    assert on_site["remaining_s"] == 5400.0
    assert datetime.fromisoformat(on_site["due_at"]) == datetime(2026, 1, 12, 10, 30, tzinfo=SH)
    assert r.json()["timeline"][-1]["data"]["paused_s"] == 1800.0  # Friday 17:30–18:00 only


async def test_impossible_pauses_are_refused(h: Harness) -> None:
    _, case_id, _ = await report_in_single_worker_grid(h)
    await h.offered_task(case_id)
    r = await act(h, case_id, "resume")
    assert r.status_code == 409 and r.json()["error"] == "invalid_transition"
    assert (await act(h, case_id, "pause", kind="extension", reason="x")).status_code == 200
    again = await act(h, case_id, "pause", kind="extension", reason="x")
    assert again.status_code == 409 and again.json()["state"] == "paused"
    assert (await act(h, case_id, "pause", kind="holiday", reason="x")).status_code == 422
    assert (await act(h, case_id, "pause", kind="extension", reason="")).status_code == 422
    missing = await act(h, "no-such-case", "resume")
    assert missing.status_code == 404


async def test_resolving_a_paused_case_ends_the_pause(h: Harness) -> None:
    report, case_id, _ = await report_in_single_worker_grid(h, "garbage_overflow")
    task = await h.offered_task(case_id)
    worker = h.auth("worker", task["worker_id"])
    location = (await h.client.post(f"/v1/tasks/{task['id']}/accept", headers=worker)).json()
    assert (
        await act(h, case_id, "pause", kind="waiting_for_resident", reason="等开门")
    ).status_code == 200
    h.clock.advance(120)
    await h.client.post(
        f"/v1/tasks/{task['id']}/arrive", json={"location": location["location"]}, headers=worker
    )
    r = await h.client.post(f"/v1/tasks/{task['id']}/resolve", json={"note": "ok"}, headers=worker)
    assert r.status_code == 200
    case = await h.case(case_id)
    assert types(case)[-3:] == ["WorkerArrived", "SlaResumed", "CaseResolved"]
    assert case["timeline"][-2]["data"] == {
        "kind": "waiting_for_resident",
        "paused_s": 120.0,
        "ended_by": "resolved",
    }
    assert all(c["state"] == "met" for c in case["sla"])
    # Reopened, its fresh clocks run and can be stopped again.
    r = await h.client.post(
        f"/v1/reports/{report['id']}/feedback",
        json={"satisfied": False, "score": 1},
        headers=h.auth("resident", "erin"),
    )
    assert r.status_code == 200
    assert (await act(h, case_id, "pause", kind="extension", reason="再约")).status_code == 200
