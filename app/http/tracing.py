"""A server span for each HTTP request, when tracing is on (app/platform/tracing.py)."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.request_id import request_id_in


class Traced:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = getattr(scope["app"].state, "runtime", None) if "app" in scope else None
        tracing = getattr(runtime, "tracing", None)
        if scope["type"] != "http" or tracing is None or not tracing.enabled:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        status: list[int] = []

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        with tracing.server(method, scope.get("headers", [])) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                _describe(span, scope, status[0] if status else 500)


def _describe(span: Any, scope: Scope, status: int) -> None:
    from opentelemetry.trace import Status, StatusCode

    route = scope.get("route")
    path = getattr(route, "path", None)  # the route's template, never the ids in the URL
    span.update_name(f"{scope['method']} {path}" if path else scope["method"])
    if path:
        span.set_attribute("http.route", path)
    span.set_attribute("http.status_code", status)
    rid = request_id_in(scope)
    if rid:
        span.set_attribute("gridflow.request_id", rid)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
