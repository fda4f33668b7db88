"""Sensors and AI cameras: alerts, each request signed with the device's key."""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import reads
from app.cases.states import ReportSource
from app.devices.keys import REPLAY, UNKNOWN_KEY, live_device, remember_signature
from app.http import idempotency
from app.http.bodies import json_answer, parse_json
from app.http.deps import SIGNATURE_PARAMETERS, SignedAlert, give_back, read_signed, take
from app.http.docs import errors
from app.http.errors import refusal_code
from app.http.idempotency import fingerprint
from app.http.schemas import AlertAccepted, AlertCreate
from app.intake.service import (
    Accepted,
    Location,
    alert_submission,
    repeated_alert,
    require_category,
    submit_alert,
)
from app.intake.write import write_alert
from app.platform.errors import Unauthorized
from app.platform.metrics import IntakeCount
from app.runtime import Runtime

router = APIRouter(prefix="/v1/alerts", tags=["sensors"])


@router.post(
    "",
    status_code=202,
    response_model=AlertAccepted,
    summary="Report an alert (a signed device request); repeats join the device's open case",
    description="A repeat of an `external_id` already received answers with the first alert "
    "(`duplicate: true`) and stores nothing. `case_id` is null until the case is opened.",
    responses=errors(400, 401, 413, 415, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/AlertCreate"}}
            },
        },
        "security": [{"DeviceSignature": []}],
        "parameters": [*SIGNATURE_PARAMETERS, idempotency.KEY_PARAMETER],
    },
)
async def create_alert(request: Request) -> Response:
    """The storm path, kept flat like the report route: the signature is checked with no
    database (the secret is derived from the key id) and, on PostgreSQL, one statement checks
    the key is live, refuses a replayed signature, writes the report and its outbox row and
    finds the device's open case. With an Idempotency-Key (its record holds the answer), and
    where writes are serialised (SQLite, the embedded bus), the same checks run in one unit of
    work."""
    runtime: Runtime = request.app.state.runtime
    with runtime.metrics.intake(ReportSource.SENSOR, refusal_code) as counted:
        return await _create_alert(request, runtime, counted)


async def _create_alert(request: Request, runtime: Runtime, counted: IntakeCount) -> Response:
    signed = await read_signed(request, runtime)
    body = parse_json(AlertCreate, signed.body)
    idempotency_key = idempotency.key_of(request)
    location = Location(body.location.lat, body.location.lon, body.location.crs)
    if runtime.db.serialize_writes or idempotency_key is not None:
        return await _in_unit_of_work(
            request, runtime, counted, signed, body, location, idempotency_key
        )
    await take(request, runtime, "alerts", f"device:{signed.device_id}")
    if body.category not in runtime.categories.codes:
        async with runtime.db.reader() as session:
            await require_category(session, runtime.categories, body.category)
    sub = alert_submission(
        runtime.grids,
        runtime.clock,
        device_id=signed.device_id,
        external_id=body.external_id,
        category=body.category,
        location=location,
        observed_at=body.observed_at,
        confidence=body.confidence,
    )
    written = await write_alert(runtime.db, signed.key_id, signed.signature, sub.report, sub.outbox)
    if not (written.live and written.fresh):
        # refused as before the limit was checked: a replayed copy costs the device nothing
        await give_back(request, runtime, "alerts", f"device:{signed.device_id}")
        raise Unauthorized(UNKNOWN_KEY if not written.live else REPLAY)
    if written.report_id is None:
        accepted = await repeated_alert(
            runtime.db, runtime.grids, signed.device_id, body.external_id
        )
    else:
        accepted = replace(sub.accepted, case_id=written.case_id)
    counted.duplicate = not accepted.created
    return json_answer(_answer(runtime, accepted), 202)


def _answer(runtime: Runtime, accepted: Accepted) -> AlertAccepted:
    return AlertAccepted(
        id=accepted.report_id,
        grid=reads.grid_read(runtime.grids.index, accepted.grid.code),
        case_id=accepted.case_id,
        duplicate=not accepted.created,
    )


async def _in_unit_of_work(
    request: Request,
    runtime: Runtime,
    counted: IntakeCount,
    signed: SignedAlert,
    body: AlertCreate,
    location: Location,
    idempotency_key: str | None,
) -> Response:
    now = runtime.clock.now()
    async with runtime.db.reader() as session:
        device = await live_device(session, signed.key_id)
    await remember_signature(runtime.db, signed.signature, signed.key_id, now)
    await take(request, runtime, "alerts", f"device:{device.id}")
    async with runtime.db.transaction() as uow:
        claim = await idempotency.claim(
            uow.session,
            f"device:{device.id}",
            idempotency_key,
            fingerprint("alert", body.model_dump(mode="json")),
            now,
        )
        if claim.replay is not None:
            counted.duplicate = True
            return claim.replay
        accepted = await submit_alert(
            uow,
            runtime.grids,
            runtime.categories,
            runtime.clock,
            device=device,
            external_id=body.external_id,
            category=body.category,
            location=location,
            observed_at=body.observed_at,
            confidence=body.confidence,
        )
        answer = _answer(runtime, accepted)
        claim.complete(202, answer)
    counted.duplicate = not accepted.created
    return json_answer(answer, 202)
