"""Worker status and who gets the offer: nearest fresh location, capacity, grid → street."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from app.models import Worker
from geo.crs import from_wgs84
from geo.distance import haversine_m
from tests.harness import Harness

TWO_WORKER_GRID = 0  # units[0] has two workers (every fourth unit grid does)


def spot(h: Harness, n: int) -> tuple[str, float, float]:
    grid = h.runtime.grids.require().units[n]
    centre = grid.geometry.representative_point()
    return grid.code, centre.x, centre.y


async def put_status(h: Harness, worker: str, **body: Any) -> Any:
    return await h.client.put("/v1/workers/me/status", json=body, headers=h.auth("worker", worker))


async def offered_to(h: Harness, lon: float, lat: float, resident: str = "fay") -> str:
    report = await h.report(resident, "garbage_overflow", point={"lat": lat, "lon": lon})
    case_id = await h.case_of(report["id"])
    return str((await h.offered_task(case_id))["worker_id"])


async def test_status_keeps_both_times_and_converts_the_location(h: Harness) -> None:
    code, lon, lat = spot(h, 1)
    worker = f"w-{code}-1"
    g_lon, g_lat = from_wgs84(lon, lat, "gcj02")
    r = await put_status(
        h,
        worker,
        on_duty=False,
        location={"lat": g_lat, "lon": g_lon, "crs": "gcj02"},
        device_time="2026-01-05T07:58:30+08:00",
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["on_duty"] is False and body["grid"] == code and body["capacity"] == 3
    where = body["location"]
    assert haversine_m(lon, lat, where["lon"], where["lat"]) < 0.5  # stored as WGS-84
    assert where["received_at"].startswith(h.clock.now().isoformat()[:19])
    assert where["device_time"] in ("2026-01-04T23:58:30Z", "2026-01-04T23:58:30+00:00")
    got = await h.client.get("/v1/workers/me/status", headers=h.auth("worker", worker))
    assert got.json() == body
    # Only a worker's own status, only by a known worker, only with a valid body.
    assert (await put_status(h, "w-nobody", on_duty=True)).status_code == 403
    r = await h.client.put(
        "/v1/workers/me/status", json={"on_duty": True}, headers=h.auth("resident", "x")
    )
    assert r.status_code == 403
    assert (await put_status(h, worker, on_duty="maybe")).status_code == 422
    assert (await put_status(h, worker, on_duty=True, extra=1)).status_code == 422
    naive = await put_status(h, worker, on_duty=True, device_time="2026-01-05T07:58:30")
    assert naive.status_code == 422  # a phone's time without its zone means nothing


async def test_an_off_duty_worker_is_not_offered(h: Harness) -> None:
    code, lon, lat = spot(h, 1)
    assert (await put_status(h, f"w-{code}-1", on_duty=False)).status_code == 200
    worker = await offered_to(h, lon, lat)
    assert worker != f"w-{code}-1"
    assert worker.split("-")[1] in h.runtime.grids.require().neighbours(code)


async def test_the_nearest_fresh_worker_is_offered(h: Harness) -> None:
    code, lon, lat = spot(h, TWO_WORKER_GRID)
    one, two = f"w-{code}-1", f"w-{code}-2"
    # One reports from about 330 m away, two from where the problem is.
    await put_status(h, one, on_duty=True, location={"lat": lat + 0.003, "lon": lon})
    await put_status(h, two, on_duty=True, location={"lat": lat, "lon": lon})
    assert await offered_to(h, lon, lat, "r1") == two
    # Much later two's location is stale; one reports afresh (far away): fresh ranks first.
    h.clock.advance(h.settings.sla.location_fresh_s + 60)
    await put_status(h, one, on_duty=True, location={"lat": lat + 0.003, "lon": lon})
    assert await offered_to(h, lon, lat, "r2") == one


async def test_a_worker_at_capacity_is_passed_over(h: Harness) -> None:
    code, lon, lat = spot(h, TWO_WORKER_GRID)
    one, two = f"w-{code}-1", f"w-{code}-2"
    await put_status(h, one, on_duty=True, location={"lat": lat + 0.003, "lon": lon})
    await put_status(h, two, on_duty=True, location={"lat": lat, "lon": lon})
    async with h.runtime.db.transaction() as uow:
        s = uow.session
        await s.execute(update(Worker).where(Worker.id == two).values(capacity=1))
    assert await offered_to(h, lon, lat, "r1") == two  # room for one
    assert await offered_to(h, lon, lat, "r2") == one  # two is full now


async def test_the_street_takes_over_when_the_grid_and_its_neighbours_are_away(
    h: Harness,
) -> None:
    index = h.runtime.grids.require()
    code, lon, lat = spot(h, 5)
    away = [code, *index.neighbours(code)]
    async with h.runtime.db.transaction() as uow:
        s = uow.session
        await s.execute(update(Worker).where(Worker.grid_code.in_(away)).values(on_duty=False))
    worker = await offered_to(h, lon, lat)
    worker_grid = worker.split("-")[1]
    assert worker_grid not in away and worker_grid[:9] == code[:9]  # same street
