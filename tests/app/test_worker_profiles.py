"""Admins set where workers belong and what they can do: grid, department, skills, capacity."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from app.models import Worker
from tests.harness import Harness


async def put(h: Harness, worker_id: str, role: str = "admin", **body: Any) -> Any:
    return await h.client.put(
        f"/v1/admin/workers/{worker_id}", json=body, headers=h.auth(role, "root")
    )


async def test_a_new_department_worker_takes_the_queue_once_on_duty(h: Harness) -> None:
    index = h.runtime.grids.require()
    unit = index.units[5]
    async with h.runtime.db.transaction() as uow:  # the bundled crews are away
        s = uow.session
        await s.execute(update(Worker).where(Worker.department == "roads").values(on_duty=False))
    r = await put(
        h, "crew-9", name="养护九队", grid=unit.code, department="roads", skills=["asphalt"]
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "id": "crew-9",
        "name": "养护九队",
        "grid": unit.code,
        "department": "roads",
        "skills": ["asphalt"],
        "capacity": 3,
        "on_duty": False,  # until the worker's phone says otherwise
        "open_tasks": 0,
    }
    listed = await h.client.get(
        "/v1/admin/workers", params={"department": "roads"}, headers=h.auth("admin", "root")
    )
    assert "crew-9" in [w["id"] for w in listed.json()]
    on_duty = await h.client.put(
        "/v1/workers/me/status", json={"on_duty": True}, headers=h.auth("worker", "crew-9")
    )
    assert on_duty.status_code == 200
    centre = unit.geometry.representative_point()
    report = await h.report("lin", "road_damage", point={"lat": centre.y, "lon": centre.x})
    task = await h.offered_task(await h.case_of(report["id"]))
    assert task["worker_id"] == "crew-9"
    # An update keeps the worker's duty and tasks.
    r = await put(h, "crew-9", name="养护九队", grid=unit.code, department="roads", capacity=5)
    assert r.json()["capacity"] == 5 and r.json()["skills"] == []
    assert r.json()["on_duty"] is True and r.json()["open_tasks"] == 1


async def test_bad_profiles_are_refused_and_write_nothing(h: Harness) -> None:
    index = h.runtime.grids.require()
    unit, community = index.units[0], index.path(index.units[0].code)[-2]
    before = await h.counts()
    for body, field in (
        ({"name": "x", "grid": "999"}, "grid"),
        ({"name": "x", "grid": community.code}, "grid"),  # not a unit grid
        ({"name": "x", "grid": unit.code, "department": "water"}, "department"),
    ):
        r = await put(h, "w-new", **body)
        assert r.status_code == 422 and r.json()["field"] == field, r.text
    r = await put(h, "w-new", name="x", grid=unit.code, skills=["Not A Skill"])
    assert r.status_code == 422
    r = await put(h, "w-new", name="x", grid=unit.code, capacity=0)
    assert r.status_code == 422
    r = await put(h, "bad id!", name="x", grid=unit.code)
    assert r.status_code == 422
    r = await put(h, "w-new", role="operator", name="x", grid=unit.code)
    assert r.status_code == 403
    assert await h.counts() == before
