"""Prometheus metrics on the API's port, for whoever runs the service."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.platform.errors import NotFound
from app.runtime import Runtime

router = APIRouter(tags=["service"])


# Not in the OpenAPI document: it is not part of the API, and scrapers read no schema. No token:
# Prometheus scrapers carry none, and the answer holds counts and timings only (never a case's
# contents or a person); `metrics.enabled=false` turns it off.
@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    if not runtime.settings.metrics.enabled:
        raise NotFound("metrics are turned off here")
    body, content_type = await runtime.metrics.exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)
