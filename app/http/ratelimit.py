"""Rate limits over HTTP: one budget per client address, checked before any work.

Every client address has one budget over all its requests (this middleware); each
authenticated principal has a budget per kind of route (reports, worker actions, sensor
alerts, reads, administration), checked once the principal is known (`app.http.deps.take`).
An empty bucket answers 429 `rate_limited` with `Retry-After` (seconds until a token is back).
The buckets are the runtime's `Limiter` (app/platform/limiter.py): on PostgreSQL one budget
shared by every API process, on the database's clock; on SQLite the process's own.
"""

from __future__ import annotations

import math

from starlette.types import ASGIApp, Receive, Scope, Send

from app.http.errors import error_response
from app.platform.settings import Bucket
from app.runtime import Runtime


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(min(seconds, 86_400))))


class AddressLimit:
    """Pure ASGI middleware: one budget per client address over every HTTP request."""

    def __init__(self, app: ASGIApp, *, bucket: Bucket, trust_forwarded: bool) -> None:
        self.app = app
        self.bucket = bucket
        self.trust_forwarded = trust_forwarded

    def address(self, scope: Scope) -> str:
        if self.trust_forwarded:
            for name, value in scope.get("headers", []):
                if name == b"x-forwarded-for":
                    return str(value.decode("latin-1")).split(",")[0].strip()
        client = scope.get("client")
        return client[0] if client else "unknown"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith(("/healthz", "/readyz")):
            await self.app(scope, receive, send)
            return
        runtime: Runtime = scope["app"].state.runtime
        wait = await runtime.limits.take(f"addr:{self.address(scope)}", self.bucket)
        if wait:
            response = error_response(
                429,
                "rate_limited",
                "too many requests from this address; retry later",
                retry_after_s=math.ceil(wait),
            )
            response.headers["Retry-After"] = retry_after(wait)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
