"""Live progress: one consumer of the case-event topic per process, fanned out to subscribers.

Subscribers are the operations feed (WebSocket), residents' report streams (SSE) and workers
waiting on a long poll. Resuming is exact: a subscriber registers first, then replays the stored
timeline after its cursor, then receives live events, skipping any cursor it already sent. A
subscriber too slow to keep up is dropped (its queue is bounded) and resumes from its cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.cases.events import EventEnvelope, EventType, envelope_of
from app.models import CaseEvent
from app.platform import topics
from app.platform.bus import Bus, Consumer, start_consumer
from app.platform.db import Database

log = logging.getLogger(__name__)


class SubscriberTooSlow(Exception):
    """The subscriber's queue overflowed; it should reconnect with its last cursor."""


@dataclass
class FeedFilter:
    grids: frozenset[str] | None = None
    street: str | None = None
    categories: frozenset[str] | None = None
    case_id: str | None = None
    report_id: str | None = None  # until the report's case is known

    def matches(self, env: EventEnvelope) -> bool:
        if self.report_id is not None and self.case_id is None:
            if env.data.get("report_id") != self.report_id:
                return False
            self.case_id = env.case_id  # the report's case is now known; follow it
            return True
        if self.case_id is not None and env.case_id != self.case_id:
            return False
        if self.grids is not None and env.grid not in self.grids:
            return False
        if self.street is not None and not (env.grid or "").startswith(self.street):
            return False
        return self.categories is None or env.category in self.categories

    def apply(self, stmt: Select[CaseEvent]) -> Select[CaseEvent]:
        if self.case_id is not None:
            stmt = stmt.where(CaseEvent.case_id == self.case_id)
        if self.grids is not None:
            stmt = stmt.where(CaseEvent.grid_code.in_(self.grids))
        if self.street is not None:
            stmt = stmt.where(CaseEvent.grid_code.startswith(self.street, autoescape=True))
        if self.categories is not None:
            stmt = stmt.where(CaseEvent.category.in_(self.categories))
        return stmt


@dataclass(eq=False)
class Subscription:
    filter: FeedFilter
    queue: asyncio.Queue[EventEnvelope] = field(default_factory=lambda: asyncio.Queue(maxsize=2000))
    overflowed: bool = False

    async def get(self) -> EventEnvelope:
        if self.overflowed:
            raise SubscriberTooSlow("subscriber fell behind; resume from the last cursor")
        return await self.queue.get()


async def replay(
    session: AsyncSession, flt: FeedFilter, after: int, limit: int = 500
) -> list[EventEnvelope]:
    stmt = flt.apply(select(CaseEvent).where(CaseEvent.id > after))
    rows = await session.scalars(stmt.order_by(CaseEvent.id).limit(limit))
    return [envelope_of(r) for r in rows]


class FeedHub:
    def __init__(self, bus: Bus, db: Database) -> None:
        self._bus = bus
        self._db = db
        self._subs: set[Subscription] = set()
        self._worker_waiters: dict[str, set[asyncio.Event]] = {}
        self._consumer: Consumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.running = False

    async def start(self) -> None:
        """Start consuming in the background; wait briefly for the first connection so that
        live subscribers see everything from now on (the bus may be down: then it retries)."""
        self._task = asyncio.create_task(self._run(), name="gridflow-feed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout=5)

    async def stop(self) -> None:
        self.running = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self) -> None:
        consumer = await start_consumer(self._bus, topics.CASE_EVENTS, None)
        self._consumer = consumer
        self.running = True
        self._connected.set()
        while True:
            try:
                for message in await consumer.getmany(timeout_s=1.0):
                    self.publish(EventEnvelope.model_validate(message.value))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("feed consumer error; continuing")
                await asyncio.sleep(0.5)

    def publish(self, env: EventEnvelope) -> None:
        for sub in list(self._subs):
            if sub.filter.matches(env):
                try:
                    sub.queue.put_nowait(env)
                except asyncio.QueueFull:
                    sub.overflowed = True
                    self._subs.discard(sub)
        if env.type is EventType.TASK_OFFERED:
            for waiter in self._worker_waiters.get(str(env.data.get("worker_id")), ()):
                waiter.set()

    @contextlib.contextmanager
    def subscribe(self, flt: FeedFilter) -> Iterator[Subscription]:
        sub = Subscription(flt)
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)

    @contextlib.contextmanager
    def offers_for(self, worker_id: str) -> Iterator[asyncio.Event]:
        """An event set when a task is offered to `worker_id` (register before checking)."""
        event = asyncio.Event()
        self._worker_waiters.setdefault(worker_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._worker_waiters.get(worker_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._worker_waiters[worker_id]

    async def stream(
        self,
        flt: FeedFilter,
        after: int | None,
        *,
        heartbeat_s: float = 15.0,
        on_subscribed: Callable[[FeedFilter], Awaitable[None]] | None = None,
    ) -> AsyncIterator[EventEnvelope | None]:
        """Stored events after `after` (None: live only), then live ones; None on idle.

        `on_subscribed` runs once the subscription is live and before the replay, the moment
        to read state that may change concurrently (a report's case id, say).
        """
        with self.subscribe(flt) as sub:
            if on_subscribed is not None:
                await on_subscribed(flt)
            sent: set[int] = set()
            if after is not None:
                cursor = after
                while True:
                    async with self._db.reader() as session:
                        page = await replay(session, flt, cursor)
                    for env in page:
                        assert env.cursor is not None
                        sent.add(env.cursor)
                        cursor = env.cursor
                        yield env
                    if len(page) < 500:
                        break
            while True:
                try:
                    env = await asyncio.wait_for(sub.get(), timeout=heartbeat_s)
                except TimeoutError:
                    yield None
                    continue
                if env.cursor is not None and env.cursor in sent:
                    continue
                yield env
