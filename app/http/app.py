"""The FastAPI application factory. Everything is built in `lifespan`, nothing at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.http import errors
from app.http.deps import bearer, device_key_id
from app.http.ratelimit import AddressLimit
from app.http.request_id import RequestId
from app.http.routes import (
    admin,
    alerts,
    cases,
    catalog,
    feed,
    health,
    metrics,
    photos,
    privacy,
    reports,
    session,
    stats,
    tasks,
    workers,
)
from app.http.schemas import AlertCreate, FeedbackCreate, GridCollection, ReportCreate, ResolveBody
from app.http.security import SecurityHeaders
from app.http.tracing import Traced
from app.platform import logs, redact
from app.platform.clock import Clock, SystemClock
from app.platform.settings import Settings
from app.runtime import Runtime

# Matched in this order on every request: the busiest routes first.
ROUTERS = tuple(
    module.router
    for module in (
        reports,
        alerts,
        tasks,
        health,
        metrics,
        catalog,
        workers,
        cases,
        stats,
        feed,
        photos,
        admin,
        session,
        privacy,
    )
)

DESCRIPTION = """
Grid-based urban governance: residents and sensors report problems, each report is placed in a
management grid cell, becomes a case, is offered to the grid's worker, runs SLA clocks and is
worked to closure, with progress visible live.

**Auth**: bearer JWTs with a `role` claim (resident, worker, operator, admin); sensors sign
each request (`X-Device-Key-Id`, `X-Timestamp`, `X-Signature`: HMAC-SHA256 over
`<timestamp>\\n<METHOD>\\n<path>\\n<body>`). Every error answer is
`{"error": "<code>", "detail": "..."}`. Writes accept an `Idempotency-Key`; limits answer 429
with `Retry-After`.

**Live**: `GET /v1/reports/{id}/events` (server-sent events) and the WebSocket
`/v1/feed?ticket=...&grid=&street=&category=&since=<cursor>` for operators (WebSockets are not
listed below; see the README). A browser cannot set headers on either: it asks
`POST /v1/tickets` for a single-use ticket and puts that, never its bearer token, in the URL.
"""

# Bodies read by hand (JSON or multipart) are referenced from openapi_extra; register them.
_EXTRA_SCHEMAS = (ReportCreate, AlertCreate, FeedbackCreate, ResolveBody, GridCollection)


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or Settings()
    if not logs.configured():  # a worker of `gridflow api --workers N` is a process of its own
        logs.configure(
            fmt=settings.log.format,
            level=settings.log.level,
            development=settings.env == "development",
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redact.install()  # after the server configured its logging
        runtime = Runtime(settings, clock or SystemClock())
        await runtime.start()
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="gridflow", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    errors.install(app)
    if settings.http.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.http.cors_origins,
            allow_methods=["GET", "POST", "PUT"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            expose_headers=["Retry-After", "Idempotent-Replayed"],
            max_age=600,
        )
    if settings.limits.enabled:
        app.add_middleware(
            AddressLimit,
            bucket=settings.limits.per_address,
            trust_forwarded=settings.limits.trust_forwarded_for,
        )
    app.add_middleware(SecurityHeaders, hsts=settings.http.hsts)
    app.add_middleware(Traced)  # a server span, when tracing is on
    app.add_middleware(RequestId)  # outermost: every line of a request carries its id
    for router in ROUTERS:
        app.include_router(router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        # The hot routes read their credentials by hand and name these schemes in openapi_extra.
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        for name, scheme in (("HTTPBearer", bearer), ("DeviceSignature", device_key_id)):
            schemes[name] = scheme.model.model_dump(mode="json", by_alias=True, exclude_none=True)
        components = schema["components"].setdefault("schemas", {})
        for model in _EXTRA_SCHEMAS:
            js = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(js.pop("$defs", {}))
            components[model.__name__] = js
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
