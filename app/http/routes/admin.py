"""Administration: replacing the grid set."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from app.core.errors import AppError
from app.core.grids import import_grid_set, import_rules
from app.http.bodies import read_limited
from app.http.deps import Admin, RuntimeDep, limit
from app.http.docs import errors
from app.http.schemas import GridSetImported

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class MalformedJson(AppError):
    status, code = 400, "malformed_json"


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def _load(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedJson(f"the body is not valid JSON: {exc}") from exc


_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/geo+json": {"schema": {"$ref": "#/components/schemas/GridCollection"}},
            "application/json": {"schema": {"$ref": "#/components/schemas/GridCollection"}},
        },
    }
}


@router.put(
    "/grids",
    dependencies=[limit("admin")],
    summary="Replace the grid set: validate everything, then swap it in as a new version",
    description="The body is a GeoJSON FeatureCollection of every grid (district, street, "
    "community, unit); each feature's properties carry `code`, `level`, `name`, `parent` and "
    "optionally `responsible`. Every problem is listed in a 422 `invalid_grid_set` answer "
    "(`problems`, each with `kind`, `message`, `feature`, `code`, `others`, `area_m2`, `at`) "
    "and nothing changes. A valid set becomes the active version at once.",
    responses=errors(400, 401, 403, 413, 422),
    openapi_extra=_BODY,
)
async def replace_grids(
    request: Request,
    runtime: RuntimeDep,
    principal: Admin,
    allow_gaps: Annotated[
        bool, Query(description="accept gaps inside the service area (reported as warnings)")
    ] = False,
) -> GridSetImported:
    raw = await read_limited(request, runtime.settings.geo.max_import_bytes)
    collection = await asyncio.to_thread(_load, raw)
    done = await import_grid_set(
        runtime.db,
        runtime.grids,
        collection,
        import_rules(runtime.settings.geo, allow_gaps=allow_gaps),
        source=f"PUT /v1/admin/grids by {principal.subject}",
        now=runtime.clock.now(),
    )
    return GridSetImported.model_validate(done.to_dict())
