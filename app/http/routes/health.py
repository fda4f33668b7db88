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
    summary="Ready to serve: database reachable, grids loaded, feed and engine running",
    responses={503: {"description": "Not ready; `checks` says what is missing"}},
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    checks = {
        "database": await runtime.db.ping(),
        "grids": runtime.grids.index is not None,
        "feed": runtime.hub.running,
        "engine": runtime.engine.healthy if runtime.engine is not None else True,
    }
    ok = all(checks.values())
    body = {
        "status": "ready" if ok else "not_ready",
        "checks": checks,
        "grid_set_version": runtime.grids.index.version if runtime.grids.index else None,
    }
    return JSONResponse(body, status_code=200 if ok else 503)
