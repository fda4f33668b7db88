"""Credentials for a session: stream tickets, and renewing gridflow's own tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel

from app.auth.tickets import issue_ticket
from app.auth.tokens import Principal, Role, issue_token
from app.http.deps import RuntimeDep, bearer_token, caller
from app.http.docs import errors
from app.platform.errors import Unauthorized

router = APIRouter(prefix="/v1", tags=["session"])
Anyone = caller(*Role, limit="reads")


class TicketRead(BaseModel):
    ticket: str
    expires_in: int


class TokenRead(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int


@router.post(
    "/tickets",
    summary="A single-use ticket for one live stream (WebSocket feed, SSE)",
    description="Put it in the stream's URL as `ticket=` instead of the bearer token: URLs end "
    "up in logs and history, and a ticket is good for one connection within `expires_in` "
    "seconds. Ask for a new one for every connection, reconnections included.",
    responses=errors(401),
)
async def new_ticket(who: Annotated[Principal, Anyone], runtime: RuntimeDep) -> TicketRead:
    ttl = runtime.settings.auth.ticket_ttl_s
    ticket = issue_ticket(runtime.tokens.secret, who, now=runtime.clock.now(), ttl_s=ttl)
    return TicketRead(ticket=ticket, expires_in=ttl)


@router.post(
    "/token/refresh",
    dependencies=[Anyone],
    summary="Renew one of gridflow's own tokens before it expires",
    description="Answers a new token for the same caller and scope, good for "
    "`auth.token_ttl_s`. A session is renewed up to `auth.session_max_s` after its first "
    "token; then its holder signs in again. Tokens of the city's identity provider are renewed "
    "there.",
    responses=errors(401),
)
async def refresh(request: Request, runtime: RuntimeDep) -> TokenRead:
    token = bearer_token(request)
    if not token:
        raise Unauthorized("a bearer token is required")
    who, since = runtime.tokens.session_of(token)
    auth = runtime.settings.auth
    now = datetime.now(UTC)  # token times are checked against the wall clock, as here
    if now.timestamp() - since > auth.session_max_s:
        raise Unauthorized("the session is too old to renew: sign in again")
    # never past the session's end
    ttl = int(min(auth.token_ttl_s, since + auth.session_max_s - now.timestamp()))
    renewed = issue_token(
        runtime.tokens.secret,
        role=who.role,
        subject=who.subject,
        issuer=auth.issuer,
        audience=auth.audience,
        now=now,
        ttl_s=ttl,
        auth_time=since,
        scope=who.scope,  # a renewed token reaches exactly what the first did
    )
    return TokenRead(access_token=renewed, expires_in=ttl)
