"""Sensors and AI cameras: alerts, each request signed with the device's key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from app import reads
from app.http import idempotency
from app.http.bodies import parse_json
from app.http.deps import DeviceLimit, RuntimeDep, Signed, UowDep
from app.http.docs import errors
from app.http.idempotency import IdempotencyKey, fingerprint
from app.http.schemas import AlertAccepted, AlertCreate
from app.intake.service import Location, submit_alert

router = APIRouter(prefix="/v1/alerts", tags=["sensors"])


def alert_body(signed: Signed) -> AlertCreate:
    return parse_json(AlertCreate, signed.body)


@router.post(
    "",
    dependencies=[DeviceLimit],
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
        }
    },
)
async def create_alert(
    signed: Signed,
    body: Annotated[AlertCreate, Depends(alert_body)],
    uow: UowDep,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> AlertAccepted | JSONResponse:
    claim = await idempotency.claim(
        uow.session,
        f"device:{signed.device.id}",
        idempotency_key,
        fingerprint("alert", body.model_dump(mode="json")),
        runtime.clock.now(),
    )
    if claim.replay is not None:
        return claim.replay
    accepted = await submit_alert(
        uow,
        runtime.grids,
        runtime.categories,
        runtime.clock,
        device=signed.device,
        external_id=body.external_id,
        category=body.category,
        location=Location(body.location.lat, body.location.lon, body.location.crs),
        observed_at=body.observed_at,
        confidence=body.confidence,
    )
    answer = AlertAccepted(
        id=accepted.report_id,
        grid=reads.grid_read(runtime.grids.index, accepted.grid.code),
        case_id=accepted.case_id,
        duplicate=not accepted.created,
    )
    claim.complete(202, answer)
    return answer
