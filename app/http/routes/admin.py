"""Administration: replacing the grid set and the SLA policies (the whole city's: admins
without a scope); workers' profiles (a scoped admin: the workers of its scope)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from app import reads
from app.gridsets.store import import_grid_set, import_rules
from app.http.bodies import read_json, read_limited
from app.http.deps import Admin, CityAdmin, Reader, RuntimeDep, UowDep, limit
from app.http.docs import errors
from app.http.schemas import GridSetImported, WorkerProfileBody
from app.platform.errors import AppError
from app.policies import document as policies
from app.policies.document import PolicyDocument
from app.reads.schemas import WorkerProfileRead
from dispatch import commands
from dispatch.commands import SaveWorkerProfile
from dispatch.workers import Profile

router = APIRouter(prefix="/v1/admin", tags=["admin"])


MAX_POLICY_BYTES = 1024 * 1024


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
    "and nothing changes. A valid set becomes the active version at once. The whole city's: "
    "admins without a scope only.",
    responses=errors(400, 401, 403, 413, 422),
    openapi_extra=_BODY,
)
async def replace_grids(
    request: Request,
    runtime: RuntimeDep,
    principal: CityAdmin,
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


@router.get(
    "/policies",
    dependencies=[limit("admin")],
    summary="The SLA policy document: departments, categories and every policy",
    description="What `PUT /v1/admin/policies` takes back unchanged. Every field is explained "
    "in docs/POLICIES.md. The whole city's: admins without a scope only.",
    responses=errors(401, 403),
)
async def read_policies(_: CityAdmin, session: Reader) -> PolicyDocument:
    return await policies.current(session)


@router.put(
    "/policies",
    dependencies=[limit("admin")],
    summary="Replace the SLA policies (departments and categories are added or updated)",
    description="Validated as a whole: every problem is listed in a 422 `invalid_policies` "
    "answer (`problems`, each with `at`, a path into the document, and `message`) and nothing "
    "changes. Every category, listed or already stored, needs a policy at priority 0. Clocks "
    "already running keep their due times; new clocks follow the new policies. The whole "
    "city's: admins without a scope only.",
    responses=errors(400, 401, 403, 413, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/PolicyDocument"}}
            },
        }
    },
)
async def replace_policies(
    request: Request, runtime: RuntimeDep, _: CityAdmin, uow: UowDep
) -> PolicyDocument:
    raw = await read_limited(request, MAX_POLICY_BYTES)
    doc = await policies.validated(uow.session, _load(raw))
    await policies.apply(uow.session, doc)
    return await policies.current(uow.session)


WorkerId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


async def profile_body(request: Request, _: Admin) -> WorkerProfileBody:
    return await read_json(request, WorkerProfileBody)


@router.get(
    "/workers",
    dependencies=[limit("admin")],
    summary="Workers' profiles: grid, department, skills, capacity",
    description="A scoped admin lists the workers of its scope: an area's grid workers, or a "
    "department's workers; a filter outside it is 403 `outside_scope`.",
    responses=errors(401, 403),
)
async def list_workers(
    who: Admin,
    session: Reader,
    grid: Annotated[str | None, Query(max_length=20, description="a grid code or prefix")] = None,
    department: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[WorkerProfileRead]:
    if who.scope is not None:
        who.scope.check_worker_filters(grid=grid, department=department)
    return await reads.worker_profiles(
        session, grid=grid, department=department, limit=limit, offset=offset, scope=who.scope
    )


@router.put(
    "/workers/{worker_id}",
    dependencies=[limit("admin")],
    summary="Create or update a worker's profile (a new worker is off duty until they report)",
    description="`grid` must be a unit grid of the live set and `department` a known department "
    "(422 `validation_error` with `field` otherwise). Skills rank workers for categories that "
    "name them; `inspect` makes the worker an inspector (核查). See docs/POLICIES.md. A scoped "
    "admin saves only workers of its scope, as they are and as they become (403 "
    "`outside_scope`).",
    responses=errors(400, 401, 403, 413, 415, 422),
)
async def save_worker(
    worker_id: WorkerId,
    who: Admin,
    body: Annotated[WorkerProfileBody, Depends(profile_body)],
    uow: UowDep,
    runtime: RuntimeDep,
) -> WorkerProfileRead:
    await reads.check_worker(
        uow.session, who, worker_id, grid_code=body.grid, department=body.department
    )
    profile = Profile(
        name=body.name,
        grid_code=body.grid,
        department=body.department,
        skills=tuple(body.skills),
        capacity=body.capacity,
    )
    worker = await commands.handle(uow, runtime.ctx, SaveWorkerProfile(worker_id, profile))
    return reads.worker_profile(worker)
