"""Request dependencies: the runtime, the unit of work, and who is calling.

The unit of work is `Depends(..., scope="function")`: it commits after the handler returns and
before the response is sent, so a 201 is only ever sent for a committed report. Declare body
parsing dependencies before `UowDep` in a handler's signature: FastAPI resolves them in that
order, so a slow upload never holds the database's write lock. Every dependency is `async`:
FastAPI runs a plain `def` in its thread pool, a hop per request for work that does no I/O.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.tickets import read_ticket
from app.auth.tokens import Principal, Role
from app.devices.keys import UNKNOWN_KEY, check_signature, remember_signature
from app.http.bodies import MAX_JSON_BYTES, read_limited
from app.models import Worker
from app.platform import logs
from app.platform.errors import Forbidden, RateLimited, Unauthorized
from app.platform.uow import UnitOfWork
from app.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]

LimitKind = Literal["reports", "worker_actions", "reads", "operations", "admin"]


async def get_uow(runtime: RuntimeDep) -> AsyncIterator[UnitOfWork]:
    async with runtime.db.transaction() as uow:
        yield uow


async def get_reader(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with runtime.db.reader() as session:
        yield session


UowDep = Annotated[UnitOfWork, Depends(get_uow, scope="function")]
Reader = Annotated[AsyncSession, Depends(get_reader, scope="function")]

bearer = HTTPBearer(auto_error=False, description="A gridflow JWT (`gridflow token issue`).")


async def principal_from_token(runtime: Runtime, token: str | None) -> Principal:
    """Who presents `token`: remembered if verified before, checked on the event loop when it
    is gridflow's own (no I/O), in a worker thread when its keys may have to be fetched."""
    if not token:
        raise Unauthorized("a bearer token is required")
    tokens = runtime.tokens
    principal = tokens.remembered(token)
    if principal is None:
        if tokens.may_fetch(token):
            principal = await asyncio.to_thread(tokens.verify, token)
        else:
            principal = tokens.verify(token)
    logs.bind_here(role=principal.role.value)  # the role only: never the token or subject
    return principal


async def get_principal(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    return await principal_from_token(runtime, credentials.credentials if credentials else None)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def check_caller(
    request: Request,
    token: str | None,
    roles: tuple[Role, ...],
    limit: LimitKind | None,
    city_wide: bool = False,
) -> Principal:
    """The caller presenting `token`, if it has one of `roles` (and, with `city_wide`, no
    scope); with `limit`, one token taken from its budget for that kind of route."""
    runtime: Runtime = request.app.state.runtime
    principal = await principal_from_token(runtime, token)
    if principal.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise Forbidden(f"this needs the role {allowed}; the token is {principal.role.value}")
    if city_wide and principal.scope is not None:
        raise Forbidden(
            f"this concerns the whole city: it needs a token without a scope, not {principal.scope}"
        )
    if limit is not None:
        take(request, runtime, limit, principal.actor)
    return principal


def caller(*roles: Role, limit: LimitKind | None = None, city_wide: bool = False) -> Any:
    """One flat dependency for a route: `check_caller` on the bearer token. Flat on purpose:
    FastAPI walks every node of a route's dependency tree on every request, and a nested tree
    of small dependencies cost the report route more than its database work."""

    async def who(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        token = credentials.credentials if credentials else None
        return await check_caller(request, token, roles, limit, city_wide)

    return Depends(who)


def bearer_token(request: Request) -> str | None:
    """The bearer token of the Authorization header, read as `HTTPBearer` reads it, for the
    hot routes that take only the request (they document `BEARER` in `openapi_extra`)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


BEARER: list[dict[str, list[str]]] = [{"HTTPBearer": []}]


async def stream_caller(
    runtime: Runtime, authorization: str | None, ticket: str | None
) -> Principal:
    """Who opens a live stream: the bearer token of the Authorization header, or else a
    stream ticket from the URL (app/auth/tickets.py), good for this one connection."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return await principal_from_token(runtime, token.strip())
    if not ticket:
        raise Unauthorized("a bearer token (Authorization header) or a ticket is required")
    now = runtime.clock.now()
    read = read_ticket(runtime.tokens.secret, ticket, now=now)
    try:
        await remember_signature(runtime.db, read.nonce, TICKET_KEY, now)
    except Unauthorized as exc:
        raise Unauthorized("ticket already used: ask for a new one") from exc
    logs.bind_here(role=read.principal.role.value)
    return read.principal


TICKET_KEY = "stream-ticket"  # how used tickets are marked among the seen signatures


Resident = Annotated[Principal, caller(Role.RESIDENT)]
WorkerPrincipal = Annotated[Principal, caller(Role.WORKER)]


async def get_worker(runtime: RuntimeDep, principal: WorkerPrincipal) -> Worker:
    async with runtime.db.reader() as session:
        worker = await session.get(Worker, principal.subject)
    if worker is None:
        raise Forbidden(f"no worker has the id {principal.subject!r}")
    return worker


CurrentWorker = Annotated[Worker, Depends(get_worker)]
# Operators and admins reach their scope (app/auth/scopes.py): routes pass `principal.scope`
# to the read models and check single cases and workers against it.
Operator = Annotated[Principal, caller(Role.OPERATOR, Role.ADMIN)]
Admin = Annotated[Principal, caller(Role.ADMIN)]
# What concerns the whole city (the grid set, the SLA policies): admins without a scope only
CityAdmin = Annotated[Principal, caller(Role.ADMIN, city_wide=True)]
# Verdicts on resolved cases: inspectors (workers; the skill is checked by the engine), operators
Inspector = Annotated[Principal, caller(Role.WORKER, Role.OPERATOR, Role.ADMIN)]
ReportReader = Annotated[Principal, caller(Role.RESIDENT, Role.OPERATOR, Role.ADMIN)]


device_key_id = APIKeyHeader(
    name="X-Device-Key-Id",
    scheme_name="DeviceSignature",
    auto_error=False,
    description="The device's key id; the request is signed with the key's secret "
    "(X-Timestamp, X-Signature: see the API description).",
)


SIGNATURE_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "X-Timestamp",
        "in": "header",
        "required": True,
        "description": "Unix seconds",
        "schema": {"type": "string", "maxLength": 12},
    },
    {
        "name": "X-Signature",
        "in": "header",
        "required": True,
        "description": "hex HMAC-SHA256 with the key's secret over "
        "`<timestamp>\\n<METHOD>\\n<path>\\n` followed by the body",
        "schema": {"type": "string", "maxLength": 64},
    },
]


@dataclass(frozen=True)
class SignedAlert:
    key_id: str
    signature: str
    device_id: str  # the key's device; whether it is revoked is checked when writing
    body: bytes  # exactly the bytes that were signed


async def read_signed(request: Request, runtime: Runtime) -> SignedAlert:
    """The body of a device request whose signature matches its key (`device_key_id` and
    `SIGNATURE_PARAMETERS` document the headers), or Unauthorized. Reads the database only
    for a key id this process has not seen."""
    headers = request.headers
    key_id = headers.get("x-device-key-id")
    timestamp = headers.get("x-timestamp")
    signature = headers.get("x-signature")
    body = await read_limited(request, MAX_JSON_BYTES)
    check_signature(
        runtime.device_master_key,
        key_id=key_id,
        timestamp=timestamp,
        signature=signature,
        method=request.method,
        path=request.url.path,
        body=body,
        now=runtime.clock.now(),
    )
    assert key_id is not None and signature is not None  # checked by check_signature
    device_id = await runtime.key_owners.device_of(runtime.db, key_id)
    if device_id is None:
        raise Unauthorized(UNKNOWN_KEY)
    return SignedAlert(key_id[:40], signature, device_id, body)


def limit(kind: LimitKind) -> Any:
    """A route dependency: take one token from the caller's budget for `kind`, whatever its
    role (the route's own principal dependency checks that)."""
    return caller(*Role, limit=kind)


def give_back(request: Request, runtime: Runtime, kind: str, who: str) -> None:
    """Return the token `take` took, for a request refused afterwards as it would have been
    before the limit was checked (a replayed or revoked device request)."""
    limits = runtime.settings.limits
    if limits.enabled:
        request.app.state.buckets.give_back(f"{kind}:{who}", getattr(limits, kind))


def take(request: Request, runtime: Runtime, kind: str, who: str) -> None:
    limits = runtime.settings.limits
    if not limits.enabled:
        return
    wait = request.app.state.buckets.take(f"{kind}:{who}", getattr(limits, kind))
    if wait:
        raise RateLimited(
            f"too many {kind.replace('_', ' ')} requests; retry later",
            retry_after_s=max(1, math.ceil(wait)),
        )
