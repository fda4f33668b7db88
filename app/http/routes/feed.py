"""The operations feed over WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from app import reads
from app.auth.tokens import Role
from app.cases.events import EventEnvelope
from app.http.deps import stream_caller
from app.platform.errors import AppError
from app.platform.feed import FeedFilter, SubscriberTooSlow
from app.runtime import Runtime

router = APIRouter(tags=["operations"])

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
SEND_CHUNK = 50  # events whose SLA state is read at once: a client that drops often still moves


class SlaSnapshots:
    """The SLA state sent with each feed event, read once per event whatever the number of
    screens watching (the newest events are kept), for a page of events in one read."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._by_cursor: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()

    async def of(self, runtime: Runtime, page: list[EventEnvelope]) -> list[list[dict[str, Any]]]:
        # what is cached now: another screen's page may evict it while this one reads
        cached = {
            env.cursor: self._by_cursor[env.cursor]
            for env in page
            if env.cursor is not None and env.cursor in self._by_cursor
        }
        missing = {
            env.case_id for env in page if env.case_id is not None and env.cursor not in cached
        }
        states: dict[str, list[dict[str, Any]]] = {}
        if missing:
            async with runtime.db.reader() as session:
                read = await reads.sla_states(session, runtime.ctx, missing)
            states = {k: [c.model_dump(mode="json") for c in v] for k, v in read.items()}
        out: list[list[dict[str, Any]]] = []
        for env in page:
            if env.case_id is None:
                out.append([])
                continue
            if env.cursor is not None and env.cursor in cached:
                out.append(cached[env.cursor])
                continue
            value = states[env.case_id]
            if env.cursor is not None:
                self._by_cursor[env.cursor] = value
            out.append(value)
        while len(self._by_cursor) > self._size:
            self._by_cursor.popitem(last=False)
        return out


def _snapshots(state: Any) -> SlaSnapshots:
    if not hasattr(state, "sla_snapshots"):
        state.sla_snapshots = SlaSnapshots()
    snapshots: SlaSnapshots = state.sla_snapshots
    return snapshots


def _split(value: str | None) -> frozenset[str] | None:
    if not value:
        return None
    return frozenset(v.strip() for v in value.split(",") if v.strip()) or None


@router.websocket("/v1/feed")
async def feed(
    websocket: WebSocket,
    ticket: Annotated[str | None, Query(max_length=1000)] = None,
    grid: Annotated[str | None, Query(max_length=2000)] = None,
    street: Annotated[str | None, Query(max_length=20)] = None,
    category: Annotated[str | None, Query(max_length=1000)] = None,
    since: Annotated[int | None, Query(ge=0)] = None,
) -> None:
    """Every case event as JSON `{cursor, type, case_id, grid, category, occurred_at, data,
    sla}`; `sla` is the case's clocks as `GET /v1/cases/{id}` shows them, read when the event
    is sent (goal, elapsed, remaining, paused, breached, due_at per clock).

    Operators and admins only: a single-use `ticket` (`POST /v1/tickets`) in the query, or a
    bearer token in the handshake's Authorization header (never a token in the URL). Filters:
    `grid` (comma-separated unit grid codes), `street` (street code), `category`
    (comma-separated). `since=<cursor>` replays stored events after that cursor first, then
    continues live; reconnect (with a new ticket) from the last cursor received to miss
    nothing. A refused credential closes the socket with code 1008.

    A scoped token (a district's, a street's, a department's) gets only the events of its
    scope's cases, whatever the filters; a `grid` or `street` outside it closes the socket
    with code 1008.
    """
    runtime: Runtime = websocket.app.state.runtime
    try:
        who = await stream_caller(runtime, websocket.headers.get("authorization"), ticket)
    except AppError as exc:
        await websocket.close(code=POLICY_VIOLATION, reason=exc.detail[:120])
        return
    if who.role not in (Role.OPERATOR, Role.ADMIN):
        await websocket.close(code=POLICY_VIOLATION, reason="the feed is for operators")
        return
    flt = FeedFilter(
        grids=_split(grid),
        street=street or None,
        categories=_split(category),
        scope=who.scope,
    )
    if who.scope is not None:
        try:
            for area in (flt.street, *(flt.grids or ())):
                who.scope.check_area(area)
        except AppError as exc:
            await websocket.close(code=POLICY_VIOLATION, reason=exc.detail[:120])
            return
    await websocket.accept()
    snapshots = _snapshots(websocket.app.state)

    async def pump() -> None:
        with runtime.metrics.subscribed("feed"):
            async for page in runtime.hub.stream(flt, since, heartbeat_s=20):
                if not page:
                    await websocket.send_json({"type": "heartbeat"})
                    continue
                for start in range(0, len(page), SEND_CHUNK):
                    await send(page[start : start + SEND_CHUNK])

    async def send(chunk: list[EventEnvelope]) -> None:
        for env, sla in zip(chunk, await snapshots.of(runtime, chunk), strict=True):
            await websocket.send_json(
                {
                    "cursor": env.cursor,
                    "type": env.type.value,
                    "case_id": env.case_id,
                    "grid": env.grid,
                    "category": env.category,
                    "seq": env.seq,
                    "occurred_at": env.occurred_at.isoformat(),
                    "actor": reads.public_actor(env.actor),
                    "data": env.data,
                    "sla": sla,
                }
            )

    async def drain() -> None:
        # The feed is one-way; reading tells us when the client goes away.
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()

    sender = asyncio.create_task(pump())
    reader = asyncio.create_task(drain())
    done, pending = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    for task in done:
        failure = task.exception()
        if isinstance(failure, SubscriberTooSlow):
            await websocket.close(code=TRY_AGAIN_LATER, reason="too slow; resume from cursor")
        elif failure is not None and not isinstance(failure, WebSocketDisconnect):
            with contextlib.suppress(Exception):
                await websocket.close(code=1011)
