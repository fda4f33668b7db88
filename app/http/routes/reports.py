"""Residents: submit a report, follow it, rate the outcome."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from app import reads
from app.auth.tokens import Principal, Role
from app.cases.events import EventEnvelope
from app.cases.states import ReportSource
from app.http import idempotency
from app.http.bodies import json_answer, read_body, read_json
from app.http.deps import (
    BEARER,
    Reader,
    ReportReader,
    Resident,
    RuntimeDep,
    UowDep,
    bearer_token,
    check_caller,
    limit,
    stream_caller,
)
from app.http.docs import body_docs, errors
from app.http.errors import refusal_code
from app.http.idempotency import fingerprint
from app.http.schemas import FeedbackCreate, FeedbackResult, ReportAccepted, ReportCreate
from app.intake.service import Location, NewReport, prepare_report
from app.intake.write import write_submission
from app.models import Report
from app.platform.errors import Forbidden, ReportNotFound
from app.platform.feed import FeedFilter
from app.platform.metrics import IntakeCount
from app.reads.schemas import ReportRead
from app.runtime import Runtime
from dispatch import commands
from dispatch.commands import GiveFeedback

router = APIRouter(prefix="/v1/reports", tags=["residents"])


@router.post(
    "",
    status_code=201,
    response_model=ReportAccepted,
    summary="Submit a report (resident token); JSON, or multipart with `report` and `photos`",
    responses=errors(400, 401, 403, 413, 415, 422),
    openapi_extra={
        **body_docs("ReportCreate", "report"),
        "security": BEARER,
        "parameters": [idempotency.KEY_PARAMETER],
    },
)
async def create_report(request: Request) -> Response:
    """The hot path of intake, kept flat: no dependencies for FastAPI to walk (the caller,
    the body and the key are read here, documented in `openapi_extra`), and the report, its
    photos, its outbox row and the key's record written in one statement."""
    runtime: Runtime = request.app.state.runtime
    with runtime.metrics.intake(ReportSource.RESIDENT, refusal_code) as counted:
        return await _create_report(request, runtime, counted)


async def _create_report(request: Request, runtime: Runtime, counted: IntakeCount) -> Response:
    resident = await check_caller(request, bearer_token(request), (Role.RESIDENT,), "reports")
    idempotency_key = idempotency.key_of(request)
    report, photos = await read_body(
        request, ReportCreate, json_part="report", limits=runtime.settings.intake
    )
    sub = await prepare_report(
        runtime.db,
        runtime.grids,
        runtime.categories,
        runtime.clock,
        runtime.photos,
        NewReport(
            resident.subject,
            report.category,
            report.description,
            Location(report.location.lat, report.location.lon, report.location.crs),
            report.address,
            photos,
        ),
    )
    accepted = sub.accepted
    answer = ReportAccepted(
        id=accepted.report_id,
        status="received",
        category=accepted.category,
        grid=reads.grid_read(runtime.grids.index, accepted.grid.code),
        created_at=accepted.created_at,
        links=reads.report_links(accepted.report_id),
    )
    record = None
    if idempotency_key is not None:
        request_hash = fingerprint(
            "report", report.model_dump(mode="json"), [p.sha256 for p in photos]
        )
        record = idempotency.record_row(
            resident.actor, idempotency_key, request_hash, 201, answer, accepted.created_at
        )
    if not await write_submission(runtime.db, sub.report, sub.photos, sub.outbox, record):
        assert record is not None
        replayed = await idempotency.replay(runtime.db, record)
        counted.duplicate = True
        return replayed
    return json_answer(answer, 201)


async def _readable_report(session: Reader, report_id: str, who: Principal) -> Report:
    report = await session.get(Report, report_id)
    if report is None:
        raise ReportNotFound(f"report {report_id} does not exist")
    if who.role is Role.RESIDENT and report.reporter_id != who.subject:
        raise Forbidden("this report belongs to another resident")
    if who.scope is not None and not await reads.report_in_scope(session, who.scope, report):
        raise ReportNotFound(f"report {report_id} does not exist")  # outside: the same
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
    runtime.access.record(who, "report", case_id=report.case_id, report_id=report.id)
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
    description="Bearer token in the Authorization header, or for clients that cannot set "
    "headers (EventSource) a single-use `ticket` in the query (`POST /v1/tickets`; never the "
    "token itself): EventSource's own reconnection then fails, so on error ask for a new "
    "ticket and reopen with `?ticket=…&after=<the last id received>`. Each event: `id` is "
    "the cursor, `event` the type, `data` JSON `{cursor, type, case_id, occurred_at, data}`. "
    "A comment line every 15 s keeps the connection alive.",
    responses={**errors(401, 403, 404), 200: {"content": {"text/event-stream": {}}}},
    response_class=StreamingResponse,
    openapi_extra={"security": [{"HTTPBearer": []}]},
)
async def report_events(
    report_id: str,
    runtime: RuntimeDep,
    request: Request,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ticket: Annotated[
        str | None, Query(max_length=1000, description="A stream ticket, for EventSource")
    ] = None,
    after: Annotated[int | None, Query(ge=0, description="Resume after this cursor")] = None,
) -> StreamingResponse:
    who = await stream_caller(runtime, request.headers.get("authorization"), ticket)
    if who.role not in (Role.RESIDENT, Role.OPERATOR, Role.ADMIN):
        raise Forbidden("residents (their own reports) and operators only")
    async with runtime.db.reader() as session:
        report = await _readable_report(session, report_id, who)
    runtime.access.record(who, "events", case_id=report.case_id, report_id=report.id)
    cursor = after or 0
    if last_event_id and last_event_id.strip().isdigit():
        cursor = int(last_event_id.strip())
    for_resident = who.role is Role.RESIDENT
    flt = FeedFilter(report_id=report_id, scope=who.scope)

    async def case_of_report() -> str | None:
        async with runtime.db.reader() as session:
            report = await session.get(Report, report_id)
        return None if report is None else report.case_id

    async def events() -> AsyncIterator[str]:
        yield "retry: 3000\n\n"
        with runtime.metrics.subscribed("sse"):
            async for page in runtime.hub.stream(flt, cursor, case_of=case_of_report):
                yield (
                    "".join(_sse(env, for_resident) for env in page) if page else ": keep-alive\n\n"
                )

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
