"""Every request has an id: the caller's `X-Request-ID` when it is a sane one, else a new one.

It is bound to every log line written while the request is handled (app/platform/logs.py) and
returned in the answer's `X-Request-ID`, so a resident's "it failed at 12:03" or a proxy's log
line leads to the server's lines for that request. WebSocket connections get one too (logged,
not returned: the handshake answer is the server's own).
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.platform import logs

HEADER = b"x-request-id"
_SANE = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")  # no @: no e-mail address in every line
STATE_KEY = "request_id"


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == HEADER and _SANE.fullmatch(value):
            return str(value.decode("ascii"))
    return uuid.uuid4().hex


def request_id_in(scope: Scope) -> str | None:
    """The id `RequestId` gave this request, where its log context has ended."""
    value = scope.get("state", {}).get(STATE_KEY)
    return value if isinstance(value, str) else None


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope)
        scope.setdefault("state", {})[STATE_KEY] = rid  # for the 500 answered outside

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(n, v) for n, v in message.get("headers", []) if n.lower() != HEADER]
                message["headers"] = [*headers, (HEADER, rid.encode("ascii"))]
            await send(message)

        with logs.bind(request_id=rid):
            await self.app(scope, receive, send_with_id if scope["type"] == "http" else send)
