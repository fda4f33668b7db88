"""Public reference data: categories and grids."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.core.errors import OutsideServiceArea, ServiceUnavailable
from app.http import views
from app.http.deps import Reader, RuntimeDep
from app.http.docs import errors
from app.http.schemas import CategoryRead, GridRead
from geo import CRS, GridLevel, to_wgs84

router = APIRouter(prefix="/v1", tags=["reference"])


@router.get("/categories", summary="Report categories and their SLA goals (seconds)")
async def list_categories(session: Reader) -> list[CategoryRead]:
    return await views.categories(session)


@router.get("/grids", summary="The active grid set as GeoJSON", responses=errors())
async def list_grids(
    runtime: RuntimeDep,
    level: GridLevel | None = None,
    parent: Annotated[str | None, Query(max_length=20)] = None,
) -> dict[str, Any]:
    index = runtime.grids.index
    if index is None:
        raise ServiceUnavailable("no grid set is loaded")
    collection = index.to_geojson(level)
    if parent:
        collection["features"] = [
            f for f in collection["features"] if f["properties"]["parent"] == parent
        ]
    collection["version"] = index.version
    return collection


@router.get("/grids/locate", summary="The unit grid holding a point", responses=errors(422))
async def locate(
    runtime: RuntimeDep,
    lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
    lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
    crs: CRS = CRS.WGS84,
) -> GridRead:
    index = runtime.grids.index
    if index is None:
        raise ServiceUnavailable("no grid set is loaded")
    x, y = to_wgs84(lon, lat, crs)
    grid = index.locate(x, y)
    if grid is None:
        raise OutsideServiceArea("the location is outside every grid of the service area")
    return views.grid_read(index, grid.code)
