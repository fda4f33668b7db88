"""Residents: submit a report, follow it, rate the outcome."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from app import reads
from app.auth.tokens import Principal, Role
from app.cases.events import EventEnvelope
from app.http import idempotency
from app.http.bodies import read_body, read_json
from app.http.deps import (
    Reader,
    ReportReader,
    Resident,
    RuntimeDep,
    UowDep,
    limit,
    principal_from_token,
)
from app.http.docs import body_docs, errors
from app.http.idempotency import IdempotencyKey, fingerprint
from app.http.schemas import FeedbackCreate, FeedbackResult, ReportAccepted, ReportCreate
from app.intake.service import Location, submit_report
from app.models import Report
from app.photos.store import CheckedPhoto
from app.platform.errors import Forbidden, ReportNotFound
from app.platform.feed import FeedFilter
from app.reads.schemas import ReportRead
from dispatch import commands
from dispatch.commands import GiveFeedback

router = APIRouter(prefix="/v1/reports", tags=["residents"])


async def report_body(
    request: Request, runtime: RuntimeDep, _: Resident
) -> tuple[ReportCreate, list[CheckedPhoto]]:
    return await read_body(
        request, ReportCreate, json_part="report", limits=runtime.settings.intake
    )


ReportBody = Annotated[tuple[ReportCreate, list[CheckedPhoto]], Depends(report_body)]


@router.post(
    "",
    dependencies=[limit("reports")],
    status_code=201,
    response_model=ReportAccepted,
    summary="Submit a report (resident token); JSON, or multipart with `report` and `photos`",
    responses=errors(400, 401, 403, 413, 415, 422),
    openapi_extra=body_docs("ReportCreate", "report"),
)
async def create_report(
    resident: Resident,
    body: ReportBody,
    uow: UowDep,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> ReportAccepted | JSONResponse:
    report, photos = body
    request = fingerprint("report", report.model_dump(mode="json"), [p.sha256 for p in photos])
    claim = await idempotency.claim(
        uow.session, resident.actor, idempotency_key, request, runtime.clock.now()
    )
    if claim.replay is not None:
        return claim.replay
    accepted = await submit_report(
        uow,
        runtime.grids,
        runtime.categories,
        runtime.clock,
        runtime.photos,
        resident_id=resident.subject,
        category=report.category,
        description=report.description,
        location=Location(report.location.lat, report.location.lon, report.location.crs),
        address=report.address,
        photos=photos,
    )
    answer = ReportAccepted(
        id=accepted.report_id,
        status="received",
        category=accepted.category,
        grid=reads.grid_read(runtime.grids.index, accepted.grid.code),
        created_at=accepted.created_at,
        links=reads.report_links(accepted.report_id),
    )
    claim.complete(201, answer)
    return answer


async def _readable_report(session: Reader, report_id: str, who: Principal) -> Report:
    report = await session.get(Report, report_id)
    if report is None:
        raise ReportNotFound(f"report {report_id} does not exist")
    if who.role is Role.RESIDENT and report.reporter_id != who.subject:
        raise Forbidden("this report belongs to another resident")
    return report


@router.get(
    "/{report_id}",
    dependencies=[limit("reads")],
    summary="A report's status, grid, assignee, deadlines and timeline (owner or operator)",
    responses=errors(401, 403, 404),
)
async def read_report(
    report_id: str, who: ReportReader, session: Reader, runtime: RuntimeDep
) -> ReportRead:
    report = await _readable_report(session, report_id, who)
    return await reads.report_view(
        session, runtime.ctx, runtime.grids.index, report, for_resident=who.role is Role.RESIDENT
    )


def _sse(env: EventEnvelope, for_resident: bool) -> str:
    payload = {
        "cursor": env.cursor,
        "type": env.type.value,
        "case_id": env.case_id,
        "occurred_at": env.occurred_at.isoformat(),
        "data": reads.resident_safe(env.data) if for_resident else env.data,
    }
    return f"id: {env.cursor}\nevent: {env.type.value}\ndata: {json.dumps(payload)}\n\n"


@router.get(
    "/{report_id}/events",
    summary="Server-sent events of the report's case; resumes after `Last-Event-ID`",
    description="Bearer token in the Authorization header, or `token` in the query for "
    "clients that cannot set headers. Each event: `id` is the cursor, `event` the type, "
    "`data` JSON `{cursor, type, case_id, occurred_at, data}`. A comment line every 15 s "
    "keeps the connection alive.",
    responses={**errors(401, 403, 404), 200: {"content": {"text/event-stream": {}}}},
    response_class=StreamingResponse,
    openapi_extra={"security": [{"HTTPBearer": []}]},
)
async def report_events(
    report_id: str,
    runtime: RuntimeDep,
    request: Request,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    token: Annotated[str | None, Query(description="Bearer token, for EventSource")] = None,
    after: Annotated[int | None, Query(ge=0, description="Resume after this cursor")] = None,
) -> StreamingResponse:
    header = request.headers.get("authorization", "")
    raw = header[7:] if header.lower().startswith("bearer ") else token
    who = await principal_from_token(runtime, raw)
    if who.role not in (Role.RESIDENT, Role.OPERATOR, Role.ADMIN):
        raise Forbidden("residents (their own reports) and operators only")
    async with runtime.db.reader() as session:
        await _readable_report(session, report_id, who)
    cursor = after or 0
    if last_event_id and last_event_id.strip().isdigit():
        cursor = int(last_event_id.strip())
    for_resident = who.role is Role.RESIDENT
    flt = FeedFilter(report_id=report_id)

    async def learn_case(f: FeedFilter) -> None:
        async with runtime.db.reader() as session:
            report = await session.get(Report, report_id)
            if report is not None and report.case_id is not None:
                f.case_id = report.case_id

    async def events() -> AsyncIterator[str]:
        yield "retry: 3000\n\n"
        async for env in runtime.hub.stream(flt, cursor, on_subscribed=learn_case):
            yield ": keep-alive\n\n" if env is None else _sse(env, for_resident)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def feedback_body(request: Request, _: Resident) -> FeedbackCreate:
    return await read_json(request, FeedbackCreate)


@router.post(
    "/{report_id}/feedback",
    dependencies=[limit("reports")],
    summary="Rate a resolved case: satisfied closes it, not satisfied reopens it",
    responses=errors(400, 401, 403, 404, 409, 413, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/FeedbackCreate"}}
            },
        }
    },
)
async def post_feedback(
    report_id: str,
    resident: Resident,
    body: Annotated[FeedbackCreate, Depends(feedback_body)],
    uow: UowDep,
    runtime: RuntimeDep,
) -> FeedbackResult:
    command = GiveFeedback(report_id, resident.subject, body.satisfied, body.score, body.comment)
    case = await commands.handle(uow, runtime.ctx, command)
    return FeedbackResult(report_id=report_id, case_id=case.id, case_status=case.status)
