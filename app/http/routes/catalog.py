"""Public reference data: categories and grids."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app import reads
from app.http.deps import Reader, RuntimeDep
from app.http.docs import errors
from app.http.schemas import GridLocated
from app.platform.errors import OutsideServiceArea, ServiceUnavailable
from app.reads.schemas import CategoryRead
from geo import CRS, GridLevel, to_wgs84

router = APIRouter(prefix="/v1", tags=["reference"])


@router.get("/categories", summary="Report categories and their SLA goals (seconds)")
async def list_categories(session: Reader) -> list[CategoryRead]:
    return await reads.categories(session)


@router.get("/grids", summary="The active grid set as GeoJSON", responses=errors())
async def list_grids(
    runtime: RuntimeDep,
    level: GridLevel | None = None,
    parent: Annotated[str | None, Query(max_length=20, description="the parent's code")] = None,
) -> dict[str, Any]:
    index = runtime.grids.index
    if index is None:
        raise ServiceUnavailable("no grid set is loaded")
    return index.to_geojson(level, parent)


@router.get(
    "/grids/locate",
    summary="The unit grid holding a point (WGS-84, GCJ-02 or BD-09)",
    description="A point on a shared edge or vertex belongs to the grid with the smallest code; "
    "a point just outside the service area (within `geo.snap_m` metres) to the nearest grid; "
    "farther out the answer is 422 outside_service_area.",
    responses=errors(422),
)
async def locate(
    runtime: RuntimeDep,
    lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
    lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
    crs: CRS = CRS.WGS84,
) -> GridLocated:
    index = runtime.grids.index  # one read: the whole answer comes from one version
    if index is None:
        raise ServiceUnavailable("no grid set is loaded")
    x, y = to_wgs84(lon, lat, crs)
    grid = index.locate(x, y)
    if grid is None:
        raise OutsideServiceArea("the location is outside every grid of the service area")
    return GridLocated(
        **reads.grid_read(index, grid.code).model_dump(),
        level=grid.level.value,
        responsible=grid.responsible,
        grid_set_version=index.version,
    )
