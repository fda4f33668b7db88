"""Request dependencies: the runtime, the unit of work, and who is calling.

The unit of work is `Depends(..., scope="function")`: it commits after the handler returns and
before the response is sent, so a 201 is only ever sent for a committed report. Declare body
parsing dependencies before `UnitOfWork` in a handler's signature: FastAPI resolves them in that
order, so a slow upload never holds the database's write lock.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import Principal, Role, hash_device_key, verify_token
from app.core.errors import Forbidden, RateLimited, Unauthorized
from app.core.models import Device, Worker
from app.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_uow(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with runtime.db.transaction() as session:
        yield session


async def get_reader(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with runtime.db.reader() as session:
        yield session


UnitOfWork = Annotated[AsyncSession, Depends(get_uow, scope="function")]
Reader = Annotated[AsyncSession, Depends(get_reader, scope="function")]

bearer = HTTPBearer(auto_error=False, description="A gridflow JWT (`gridflow token issue`).")
device_key = APIKeyHeader(
    name="X-Device-Key",
    auto_error=False,
    description="The device's key (`gridflow device create`).",
)


def principal_from_token(runtime: Runtime, token: str | None) -> Principal:
    if not token:
        raise Unauthorized("a bearer token is required")
    auth = runtime.settings.auth
    return verify_token(runtime.secret, token, issuer=auth.issuer, audience=auth.audience)


def get_principal(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    return principal_from_token(runtime, credentials.credentials if credentials else None)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require(*roles: Role):  # type: ignore[no-untyped-def]
    def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise Forbidden(f"this needs the role {allowed}; the token is {principal.role.value}")
        return principal

    return check


Resident = Annotated[Principal, Depends(require(Role.RESIDENT))]
WorkerPrincipal = Annotated[Principal, Depends(require(Role.WORKER))]


async def get_worker(runtime: RuntimeDep, principal: WorkerPrincipal) -> Worker:
    async with runtime.db.reader() as session:
        worker = await session.get(Worker, principal.subject)
    if worker is None:
        raise Forbidden(f"no worker has the id {principal.subject!r}")
    return worker


CurrentWorker = Annotated[Worker, Depends(get_worker)]
Operator = Annotated[Principal, Depends(require(Role.OPERATOR, Role.ADMIN))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
ReportReader = Annotated[Principal, Depends(require(Role.RESIDENT, Role.OPERATOR, Role.ADMIN))]


async def get_device(
    runtime: RuntimeDep, key: Annotated[str | None, Depends(device_key)]
) -> Device:
    if not key:
        raise Unauthorized("the X-Device-Key header is required")
    async with runtime.db.reader() as session:
        device = await session.scalar(select(Device).where(Device.key_hash == hash_device_key(key)))
    if device is None or device.revoked_at is not None:
        raise Unauthorized("unknown or revoked device key")
    return device


CurrentDevice = Annotated[Device, Depends(get_device)]


LimitKind = Literal["reports", "worker_actions", "reads", "admin"]


def limit(kind: LimitKind) -> Any:
    """A route dependency: take one token from the principal's budget for `kind`."""

    def check(request: Request, runtime: RuntimeDep, who: CurrentPrincipal) -> None:
        _take(request, runtime, kind, who.actor)

    return Depends(check)


def _take(request: Request, runtime: Runtime, kind: str, who: str) -> None:
    limits = runtime.settings.limits
    if not limits.enabled:
        return
    wait = request.app.state.buckets.take(f"{kind}:{who}", getattr(limits, kind))
    if wait:
        raise RateLimited(
            f"too many {kind.replace('_', ' ')} requests; retry later",
            retry_after_s=max(1, math.ceil(wait)),
        )


def _device_limit(request: Request, runtime: RuntimeDep, device: CurrentDevice) -> None:
    _take(request, runtime, "alerts", f"device:{device.id}")


DeviceLimit = Depends(_device_limit)
