"""Operations centre: list and inspect cases, stop and restart their SLA clocks; inspectors'
verdicts (核查)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from app import reads
from app.auth.tokens import Role
from app.cases.states import CaseStatus, PauseKind
from app.http import idempotency
from app.http.bodies import read_json
from app.http.deps import Inspector, Operator, Reader, RuntimeDep, UowDep, limit
from app.http.docs import errors
from app.http.idempotency import IdempotencyKey, fingerprint
from app.http.schemas import PauseBody, VerificationRead, VerifyBody
from app.models import Case
from app.platform.errors import CaseNotFound
from app.reads.schemas import CasePage, CaseRead
from dispatch import commands
from dispatch.commands import PauseClocks, ResumeClocks, VerifyCase
from geo import to_wgs84

router = APIRouter(prefix="/v1/cases", tags=["operations"])


@router.get(
    "",
    dependencies=[limit("reads")],
    summary="Cases, newest first (operator token)",
    description="`overdue=true`: open cases with an on-site, close or verify deadline already "
    "passed. `department=roads`: the roads department's queue. A scoped token lists only the "
    "cases of its scope; a `grid` or `department` outside it is 403 `outside_scope`.",
    responses=errors(401, 403),
)
async def list_cases(
    who: Operator,
    session: Reader,
    runtime: RuntimeDep,
    status: CaseStatus | None = None,
    grid: Annotated[
        str | None,
        Query(max_length=20, description="Unit grid code or a prefix (street, community)"),
    ] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    department: Annotated[
        str | None, Query(max_length=64, description="a department's queue")
    ] = None,
    overdue: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> CasePage:
    if who.scope is not None:
        who.scope.check_case_filters(grid=grid, department=department)
    return await reads.case_page(
        session,
        now=runtime.clock.now(),
        status=status,
        grid=grid,
        category=category,
        department=department,
        overdue=overdue,
        limit=limit,
        offset=offset,
        scope=who.scope,
    )


@router.get(
    "/{case_id}",
    dependencies=[limit("reads")],
    summary="One case with its assignee, task, SLA deadlines, timers and timeline",
    responses=errors(401, 403, 404),
)
async def read_case(case_id: str, who: Operator, session: Reader, runtime: RuntimeDep) -> CaseRead:
    case = await session.get(Case, case_id)
    if case is None or (who.scope is not None and not who.scope.covers_case(case)):
        raise CaseNotFound(f"case {case_id} does not exist")  # outside a scope: the same
    runtime.access.record(who, "case", case_id=case.id)
    return await reads.case_view(session, runtime.ctx, case)


async def pause_body(request: Request, _: Operator) -> PauseBody:
    return await read_json(request, PauseBody)


@router.post(
    "/{case_id}/pause",
    dependencies=[limit("operations")],
    summary="Stop the case's SLA clocks: waiting for the resident, or an approved extension",
    description="Each running on-site and close clock keeps the time it has left; the reason "
    "and the approving operator are recorded in the case history (SlaPaused).",
    responses=errors(400, 401, 403, 404, 409, 413, 415, 422),
)
async def pause_clocks(
    case_id: str,
    who: Operator,
    body: Annotated[PauseBody, Depends(pause_body)],
    uow: UowDep,
    runtime: RuntimeDep,
) -> CaseRead:
    await reads.check_case(uow.session, who, case_id)
    command = PauseClocks(case_id, PauseKind(body.kind), body.reason, who.actor)
    case = await commands.handle(uow, runtime.ctx, command)
    runtime.access.record(who, "case", case_id=case.id)
    return await reads.case_view(uow.session, runtime.ctx, case)


@router.post(
    "/{case_id}/resume",
    dependencies=[limit("operations")],
    summary="Restart the case's SLA clocks with exactly the time each had left",
    responses=errors(401, 403, 404, 409),
)
async def resume_clocks(case_id: str, who: Operator, uow: UowDep, runtime: RuntimeDep) -> CaseRead:
    await reads.check_case(uow.session, who, case_id)
    case = await commands.handle(uow, runtime.ctx, ResumeClocks(case_id, who.actor))
    runtime.access.record(who, "case", case_id=case.id)
    return await reads.case_view(uow.session, runtime.ctx, case)


async def verify_body(request: Request, _: Inspector) -> VerifyBody:
    return await read_json(request, VerifyBody)


@router.post(
    "/{case_id}/verify",
    dependencies=[limit("worker_actions")],
    response_model=VerificationRead,
    summary="核查: an inspector's verdict on a resolved case (passed, or rework 返工)",
    description="For cases whose policy requires verification (status `verifying`). An "
    "inspector is a worker with the `inspect` skill who did not do the work, on site (within "
    "the arrival radius: send `location`); operators may record a verdict too. Passed: the "
    "case is resolved (the resident rates it, or it closes). Not passed: the case reopens with "
    "fresh on-site and close clocks and is offered first to the worker who did the work. "
    "Send an `Idempotency-Key` to retry safely: a retry gets the first answer.",
    responses=errors(400, 401, 403, 404, 409, 413, 415, 422),
)
async def verify_case(
    case_id: str,
    who: Inspector,
    body: Annotated[VerifyBody, Depends(verify_body)],
    uow: UowDep,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> VerificationRead | JSONResponse:
    await reads.check_case(uow.session, who, case_id)  # operators' scopes; workers have none
    request = fingerprint("verify", case_id, body.model_dump(mode="json"))
    claim = await idempotency.claim(
        uow.session, who.actor, idempotency_key, request, runtime.clock.now()
    )
    if claim.replay is not None:
        return claim.replay
    lon = lat = None
    if body.location is not None:
        lon, lat = to_wgs84(body.location.lon, body.location.lat, body.location.crs)
    command = VerifyCase(
        case_id,
        actor=who.actor,
        inspector_id=who.subject if who.role is Role.WORKER else None,
        passed=body.passed,
        note=body.note,
        lon=lon,
        lat=lat,
    )
    case = await commands.handle(uow, runtime.ctx, command)
    answer = VerificationRead(case_id=case.id, passed=body.passed, case_status=case.status)
    claim.complete(200, answer)
    return answer
