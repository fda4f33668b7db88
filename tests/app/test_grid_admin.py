"""Replacing the grid set over HTTP: validation first, then an atomic swap in every process."""

from __future__ import annotations

import asyncio
import copy
import uuid
from typing import Any

import pytest
from shapely.geometry import shape

from app.gridsets.store import LiveGrids, import_grid_set, import_rules
from app.models import Case, Report
from app.platform.clock import ManualClock
from app.platform.settings import SlaSettings
from dispatch.context import DispatchContext
from dispatch.opening import located
from geo import GridIndex
from geo.crs import from_wgs84
from geo.demo_city import demo_grids
from tests.conftest import Configured
from tests.harness import Harness

CENTRE = {"lat": 30.265, "lon": 120.18}


def demo_collection(responsible: str | None = None) -> dict[str, Any]:
    fc = GridIndex(demo_grids(), 1).to_geojson()
    if responsible:
        for f in fc["features"]:
            f["properties"]["responsible"] = responsible
    return fc


async def put_grids(h: Harness, body: Any, role: str = "admin", **params: Any) -> Any:
    return await h.client.put(
        "/v1/admin/grids", json=body, params=params, headers=h.auth(role, "gis-office")
    )


async def locate(h: Harness, point: dict[str, float] = CENTRE) -> dict[str, Any]:
    r = await h.client.get("/v1/grids/locate", params=point)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_a_valid_set_becomes_the_live_version(h: Harness) -> None:
    before = await locate(h)
    assert before["grid_set_version"] == 1 and before["responsible"].endswith("网格长")
    r = await put_grids(h, demo_collection("湖畔街道城管中队"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {"version": 2, "grids": 340, "units": 320, "warnings": []}
    after = await locate(h)
    assert after["grid_set_version"] == 2 and after["responsible"] == "湖畔街道城管中队"
    assert after["code"] == before["code"] and after["level"] == "unit"
    assert [p["level"] for p in after["path"]] == ["street", "community", "unit"]
    grids = (await h.client.get("/v1/grids", params={"level": "street"})).json()
    assert grids["version"] == 2 and len(grids["features"]) == 4
    # A report from now on is located, and its case recorded, with version 2.
    report = await h.report()
    case_id = await h.case_of(report["id"])
    async with h.runtime.db.reader() as s:
        case = await s.get(Case, case_id)
        assert case is not None and case.grid_set_version == 2
        row = await s.get(Report, report["id"])
        assert row is not None and row.grid_set_version == 2


async def test_an_invalid_set_changes_nothing_and_lists_every_problem(h: Harness) -> None:
    fc = demo_collection()
    units = [f for f in fc["features"] if f["properties"]["level"] == "unit"]
    units[1]["geometry"] = copy.deepcopy(units[0]["geometry"])  # two grids in one place
    units[5]["properties"]["code"] = "33010600100"  # too short
    units[7]["properties"]["parent"] = "330106009009"  # no such community
    before = await h.counts()
    r = await put_grids(h, fc)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "invalid_grid_set"
    kinds = {p["kind"] for p in body["problems"]}
    assert {"overlap", "bad_code", "orphan"} <= kinds
    overlap = next(p for p in body["problems"] if p["kind"] == "overlap")
    assert overlap["area_m2"] > 1000 and len(overlap["others"]) == 1
    assert all("message" in p for p in body["problems"])
    assert await h.counts() == before
    assert (await locate(h))["grid_set_version"] == 1


async def test_gaps_are_refused_unless_allowed(h: Harness) -> None:
    fc = demo_collection()
    code = (await locate(h))["code"]
    gone = next(f for f in fc["features"] if f["properties"]["code"] == code)
    fc["features"].remove(gone)  # a grid in the middle goes missing
    inside = shape(gone["geometry"]).representative_point()
    assert shape(gone["geometry"]).exterior.distance(inside) > 0.001  # > 30 m snap distance
    r = await put_grids(h, fc)
    assert r.status_code == 422
    gaps = [p for p in r.json()["problems"] if p["kind"] == "gap"]
    assert len(gaps) == 1 and gaps[0]["area_m2"] > 10_000 and len(gaps[0]["others"]) >= 3
    r = await put_grids(h, fc, allow_gaps="true")
    assert r.status_code == 200, r.text
    assert [w["kind"] for w in r.json()["warnings"]] == ["gap"]
    # The gap is outside every grid now: a report there is refused, nothing is written.
    r = await h.client.get("/v1/grids/locate", params={"lat": inside.y, "lon": inside.x})
    assert r.status_code == 422 and r.json()["error"] == "outside_service_area"


@pytest.mark.parametrize(
    ("role", "status"), [("operator", 403), ("resident", 403), ("worker", 403)]
)
async def test_only_admins_replace_grids(h: Harness, role: str, status: int) -> None:
    r = await put_grids(h, demo_collection(), role=role)
    assert r.status_code == status and r.json()["error"] == "forbidden"
    r = await h.client.put("/v1/admin/grids", json=demo_collection())
    assert r.status_code == 401


async def test_malformed_bodies_are_refused(h: Harness) -> None:
    headers = {**h.auth("admin", "gis"), "content-type": "application/json"}
    for raw in (b"{", b'{"type": "FeatureCollection", "features": [NaN]}', b"\xff\xfe"):
        r = await h.client.put("/v1/admin/grids", content=raw, headers=headers)
        assert r.status_code == 400 and r.json()["error"] == "malformed_json", raw
    r = await put_grids(h, {"type": "Feature"})
    assert r.status_code == 422
    assert r.json()["problems"][0]["kind"] == "not_a_feature_collection"


async def test_no_request_fails_or_sees_half_a_set_during_the_swap(h: Harness) -> None:
    """Locate answers keep coming while the set is replaced; each is wholly old or wholly new,
    and once a client has seen the new version it never sees the old one again."""
    seen: list[list[tuple[int, str | None]]] = [[] for _ in range(4)]
    done = asyncio.Event()

    async def client(n: int) -> None:
        for i in range(2000):  # bounded in count; ends once the swap is over
            if done.is_set() and i > 20:
                return
            answer = await locate(h, {"lat": 30.24 + 0.01 * n, "lon": 120.15 + 0.01 * n})
            seen[n].append((answer["grid_set_version"], answer["responsible"]))

    clients = [asyncio.create_task(client(n)) for n in range(4)]
    await asyncio.sleep(0.05)
    r = await put_grids(h, demo_collection("新版网格"))
    done.set()
    await asyncio.gather(*clients)
    assert r.status_code == 200
    for answers in seen:
        assert answers
        for version, responsible in answers:  # the demo set names each unit's grid leader
            assert (version == 1 and responsible.endswith("网格长")) or (
                version,
                responsible,
            ) == (2, "新版网格")
        versions = [v for v, _ in answers]
        assert versions == sorted(versions) and versions[-1] == 2


async def test_other_processes_pick_up_a_new_version(configured: Configured) -> None:
    async with configured(geo={"reload_interval_s": 0.1}) as h:
        # Another process (the CLI, another replica) imports; this one was not told.
        done = await import_grid_set(
            h.runtime.db,
            None,
            demo_collection("区城管局"),
            import_rules(h.settings.geo),
            source="test",
            now=h.clock.now(),
        )
        assert done.version == 2

        async def swapped() -> bool:
            index = h.runtime.grids.index
            return index is not None and index.version == 2

        await h.eventually(swapped, what="the watcher to swap in version 2")
        assert (await locate(h))["responsible"] == "区城管局"


def test_a_case_is_placed_by_the_live_set_when_it_changed_after_intake() -> None:
    grids = demo_grids()
    live = LiveGrids(GridIndex(grids, version=7))
    ctx = DispatchContext(clock=ManualClock(), grids=live, sla=SlaSettings())
    report = Report(
        id=str(uuid.uuid4()),
        lon=CENTRE["lon"],
        lat=CENTRE["lat"],
        grid_code="x",
        grid_set_version=6,
    )
    code, version = located(ctx, report)
    expected = live.require().locate(CENTRE["lon"], CENTRE["lat"])
    assert expected is not None and (code, version) == (expected.code, 7)
    report.grid_set_version = 7
    assert located(ctx, report) == ("x", 7)  # same version: the intake's answer stands


@pytest.mark.parametrize("crs", ["gcj02", "bd09", "cgcs2000"])
async def test_locate_takes_phone_coordinates(h: Harness, crs: str) -> None:
    wgs = await locate(h)
    lon, lat = from_wgs84(CENTRE["lon"], CENTRE["lat"], crs)
    r = await h.client.get("/v1/grids/locate", params={"lon": lon, "lat": lat, "crs": crs})
    assert r.status_code == 200, r.text
    assert r.json()["code"] == wgs["code"]
    # The same numbers read as WGS-84 land hundreds of metres away (except for CGCS2000).
    moved = await h.client.get("/v1/grids/locate", params={"lon": lon, "lat": lat})
    assert (moved.json()["code"] == wgs["code"]) == (crs == "cgcs2000")


async def test_a_report_in_gcj02_is_placed_where_it_is(h: Harness) -> None:
    wgs = await locate(h)
    lon, lat = from_wgs84(CENTRE["lon"], CENTRE["lat"], "gcj02")
    report = await h.report(point={"lon": lon, "lat": lat, "crs": "gcj02"})
    assert report["grid"]["code"] == wgs["code"]
