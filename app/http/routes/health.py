"""Liveness and readiness for whoever runs the service."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.http.deps import RuntimeDep

router = APIRouter(tags=["service"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Ready to take reports: database reachable and grids loaded",
    description="`checks` must all hold for 200. `components` tells the state of the parts "
    "that may lag without stopping intake: the live feed's and the dispatcher's connection to "
    "the bus, and the outbox relay (Kafka); null where this process does not run that part.",
    responses={503: {"description": "Not ready; `checks` says what is missing"}},
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    checks = {
        "database": await runtime.db.ping(),
        "grids": runtime.grids.index is not None,
    }
    components: dict[str, bool | None] = {
        "feed": runtime.hub.running,
        "dispatcher": runtime.engine.consuming if runtime.engine is not None else None,
        "relay": runtime.relay.connected if runtime.relay is not None else None,
    }
    ok = all(checks.values())
    body = {
        "status": "ready" if ok else "not_ready",
        "checks": checks,
        "components": components,
        "bus": runtime.settings.bus.kind,
        "grid_set_version": runtime.grids.index.version if runtime.grids.index else None,
    }
    return JSONResponse(body, status_code=200 if ok else 503)
