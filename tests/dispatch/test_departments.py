"""Department queues, skills in the ranking, and verification (核查) with rework (返工)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from app.models import Worker
from tests.dispatch.test_assignment import spot
from tests.dispatch.test_escalation import policies, policy, put_policies
from tests.dispatch.test_sla import clocks, report_in_single_worker_grid, types
from tests.harness import Harness

ROADS = "roads"


async def road_case(h: Harness, resident: str = "ivy") -> tuple[str, str, dict[str, float]]:
    """A road-damage report where a road crew is based; the case id and report id."""
    async with h.runtime.db.reader() as s:
        crew = await s.scalar(select(Worker).where(Worker.department == ROADS).order_by(Worker.id))
    assert crew is not None and crew.lon is not None and crew.lat is not None
    point = {"lat": crew.lat, "lon": crew.lon}
    report = await h.report(resident, "road_damage", point=point)
    return await h.case_of(report["id"]), report["id"], point


async def work(h: Harness, case_id: str, point: dict[str, float]) -> str:
    """The offered worker accepts, arrives and resolves; returns the worker's id."""
    task = await h.offered_task(case_id)
    worker = h.auth("worker", task["worker_id"])
    url = f"/v1/tasks/{task['id']}"
    assert (await h.client.post(f"{url}/accept", headers=worker)).status_code == 200
    r = await h.client.post(f"{url}/arrive", json={"location": point}, headers=worker)
    assert r.status_code == 200, r.text
    r = await h.client.post(f"{url}/resolve", json={"note": "已修补"}, headers=worker)
    assert r.status_code == 200, r.text
    return str(task["worker_id"])


async def inspector_near(h: Harness, point: dict[str, float], not_: str = "") -> str:
    async with h.runtime.db.transaction() as uow:
        s = uow.session
        worker = await s.scalar(
            select(Worker)
            .where(Worker.department.is_(None), Worker.id != not_)
            .order_by(Worker.id)
            .limit(1)
        )
        assert worker is not None
        worker.skills = ["inspect"]
        worker.lon, worker.lat = point["lon"], point["lat"]
        return worker.id


async def verify(h: Harness, case_id: str, who: dict[str, str], **body: Any) -> Any:
    return await h.client.post(f"/v1/cases/{case_id}/verify", json=body, headers=who)


async def test_a_departments_category_goes_to_its_queue_not_a_grid_worker(h: Harness) -> None:
    case_id, _, _ = await road_case(h)
    task = await h.offered_task(case_id)
    async with h.runtime.db.reader() as s:
        worker = await s.get(Worker, task["worker_id"])
    assert worker is not None and worker.department == ROADS
    queue = await h.client.get(
        "/v1/cases", params={"department": ROADS}, headers=h.auth("operator", "ops")
    )
    assert [c["id"] for c in queue.json()["items"]] == [case_id]
    assert queue.json()["items"][0]["department"] == ROADS
    # With the whole department off duty a road case waits in the queue: no grid worker
    # is offered it, however near.
    async with h.runtime.db.transaction() as uow:
        s = uow.session
        await s.execute(update(Worker).where(Worker.department == ROADS).values(on_duty=False))
    waiting, _, _ = await road_case(h, "jay")
    case = await h.case_where(waiting, lambda c: "DispatchFailed" in types(c))
    assert case["task"] is None and case["status"] == "reported"


async def test_the_categorys_skill_ranks_first_within_a_tier(h: Harness) -> None:
    doc = await policies(h)
    vending = next(c for c in doc["categories"] if c["code"] == "street_vending")
    vending["skill"] = "enforcement"
    assert (await put_policies(h, doc)).status_code == 200
    code, lon, lat = spot(h, 0)  # two workers in this grid
    async with h.runtime.db.transaction() as uow:
        s = uow.session
        # the second worker is farther away, but is the one with the skill
        await s.execute(update(Worker).where(Worker.id == f"w-{code}-1").values(lon=lon, lat=lat))
        await s.execute(
            update(Worker)
            .where(Worker.id == f"w-{code}-2")
            .values(lon=lon + 0.004, lat=lat, skills=["enforcement"])
        )
    report = await h.report("kim", "street_vending", point={"lat": lat, "lon": lon})
    task = await h.offered_task(await h.case_of(report["id"]))
    assert task["worker_id"] == f"w-{code}-2"
    # Without the skill on anyone, the nearer one gets it.
    async with h.runtime.db.transaction() as uow:
        s = uow.session
        await s.execute(update(Worker).where(Worker.id == f"w-{code}-2").values(skills=[]))
    report = await h.report("kim", "street_vending", point={"lat": lat, "lon": lon})
    task = await h.offered_task(await h.case_of(report["id"]))
    assert task["worker_id"] == f"w-{code}-1"


async def test_verification_passes_then_the_resident_rates(h: Harness) -> None:
    case_id, report_id, point = await road_case(h)
    crew = await work(h, case_id, point)
    case = await h.case(case_id)
    assert case["status"] == "verifying"
    verify_clock = clocks(case)["verify"]
    assert verify_clock["goal_s"] == 4 * 3600 and verify_clock["state"] == "running"
    assert clocks(case)["close"]["state"] == "met"
    inspector = await inspector_near(h, point)
    listed = await h.client.get("/v1/workers/me/verifications", headers=h.auth("worker", inspector))
    assert listed.status_code == 200
    assert [v["case_id"] for v in listed.json()] == [case_id]
    assert listed.json()[0]["distance_m"] < 1
    # Not an inspector; the crew's own work; not on site: refused, nothing changes.
    not_inspector = await verify(
        h, case_id, h.auth("worker", crew), passed=True, note="ok", location=point
    )
    assert not_inspector.status_code == 403
    async with h.runtime.db.transaction() as uow:
        s = uow.session
        await s.execute(update(Worker).where(Worker.id == crew).values(skills=["inspect"]))
    own_work = await verify(
        h, case_id, h.auth("worker", crew), passed=True, note="ok", location=point
    )
    assert own_work.status_code == 403 and "own work" in own_work.json()["detail"]
    far = {"lat": point["lat"] + 0.01, "lon": point["lon"]}
    who = h.auth("worker", inspector)
    r = await verify(h, case_id, who, passed=True, note="ok", location=far)
    assert r.status_code == 422 and r.json()["error"] == "too_far_from_case"
    r = await verify(h, case_id, who, passed=True, note="ok")
    assert r.status_code == 422
    assert (await h.case(case_id))["status"] == "verifying"
    body = {"passed": True, "note": "路面已平整", "location": point}
    key = {"Idempotency-Key": "verify-1"}
    r = await h.client.post(f"/v1/cases/{case_id}/verify", json=body, headers=who | key)
    assert r.status_code == 200, r.text
    assert r.json() == {"case_id": case_id, "passed": True, "case_status": "resolved"}
    # The phone lost the answer and sends it again: the same answer, nothing done twice.
    retry = await h.client.post(f"/v1/cases/{case_id}/verify", json=body, headers=who | key)
    assert retry.status_code == 200 and retry.json() == r.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    case = await h.case(case_id)
    assert types(case)[-2:] == ["CaseResolved", "VerificationPassed"]
    assert clocks(case)["verify"]["state"] == "met"
    again = await verify(h, case_id, who, passed=True, note="x", location=point)
    assert again.status_code == 409
    r = await h.client.post(
        f"/v1/reports/{report_id}/feedback",
        json={"satisfied": True, "score": 5},
        headers=h.auth("resident", "ivy"),
    )
    assert r.status_code == 200 and r.json()["case_status"] == "closed"


async def test_failed_verification_is_rework_for_the_same_crew(h: Harness) -> None:
    case_id, _, point = await road_case(h)
    crew = await work(h, case_id, point)
    inspector = await inspector_near(h, point)
    h.clock.advance(600)
    r = await verify(
        h,
        case_id,
        h.auth("worker", inspector),
        passed=False,
        note="补丁已开裂",
        location=point,
    )
    assert r.status_code == 200 and r.json()["case_status"] == "dispatched"
    case = await h.case(case_id)
    assert types(case)[-2:] == ["CaseReworked", "TaskOffered"]
    reworked = case["timeline"][-2]["data"]
    assert reworked["worker_id"] == crew and reworked["note"] == "补丁已开裂"
    assert case["task"]["worker_id"] == crew  # back to whoever did the work
    on_site = clocks(case)["on_site"]
    assert on_site["state"] == "running" and on_site["elapsed_s"] == 0  # fresh clocks
    await work(h, case_id, point)
    ops = h.auth("operator", "ops")
    r = await verify(h, case_id, ops, passed=True, note="复查合格")
    assert r.status_code == 200 and r.json()["case_status"] == "resolved"


async def test_a_missed_verify_clock_breaches_and_calls_the_department(h: Harness) -> None:
    case_id, _, point = await road_case(h)
    await work(h, case_id, point)
    due = clocks(await h.case(case_id))["verify"]["due_at"]
    h.clock.advance((datetime.fromisoformat(due) - h.clock.now()).total_seconds() + 1)
    assert await h.sweep() == 3  # the warning, the breach, the department's call
    case = await h.case(case_id)
    assert types(case)[-3:] == ["SlaWarning", "SlaBreached", "CaseEscalated"]
    step = case["timeline"][-1]["data"]
    assert step["clock"] == "verify" and step["action"] == "notify_department"
    assert step["to"] == "道路养护中心值班长"
    assert clocks(case)["verify"]["state"] == "breached"
    overdue = await h.client.get(
        "/v1/cases", params={"overdue": "true"}, headers=h.auth("operator", "ops")
    )
    assert case_id in [c["id"] for c in overdue.json()["items"]]
    r = await verify(h, case_id, h.auth("operator", "ops"), passed=True, note="迟到的核查")
    assert r.status_code == 200 and r.json()["case_status"] == "resolved"


async def test_a_department_hands_a_case_back_to_its_queue(h: Harness) -> None:
    case_id, _, _ = await road_case(h)
    task = await h.offered_task(case_id)
    crew = h.auth("worker", task["worker_id"])
    assert (await h.client.post(f"/v1/tasks/{task['id']}/accept", headers=crew)).status_code == 200
    r = await h.client.post(
        f"/v1/tasks/{task['id']}/return", json={"reason": "需要大型机械"}, headers=crew
    )
    assert r.status_code == 200
    second = await h.offered_task(case_id, not_worker=task["worker_id"])
    async with h.runtime.db.reader() as s:
        worker = await s.get(Worker, second["worker_id"])
    assert worker is not None and worker.department == ROADS  # another crew, not a grid worker
    assert second["worker_id"] != task["worker_id"]


async def test_rework_goes_back_to_the_worker_even_from_a_neighbouring_grid(h: Harness) -> None:
    doc = await policies(h)
    policy(doc, "garbage_overflow").update(calendar="24x7", verify_s=3600)
    assert (await put_policies(h, doc)).status_code == 200
    _, case_id, code = await report_in_single_worker_grid(h, "garbage_overflow", n=2)
    home = await h.offered_task(case_id)
    assert home["worker_id"] == f"w-{code}-1"
    r = await h.client.post(
        f"/v1/tasks/{home['id']}/decline", json={}, headers=h.auth("worker", home["worker_id"])
    )
    assert r.status_code == 200
    point = (await h.case(case_id))["location"]
    neighbour = await work(h, case_id, point)
    assert neighbour != home["worker_id"]
    inspector = await inspector_near(h, point, not_=neighbour)
    r = await verify(
        h, case_id, h.auth("worker", inspector), passed=False, note="没扫干净", location=point
    )
    assert r.status_code == 200
    # The home grid's worker is free and nearer, but the rework goes to whoever did the work.
    assert (await h.case(case_id))["task"]["worker_id"] == neighbour
