"""Live progress: the case timeline read in cursor order, fanned out to subscribers.

Subscribers are the operations feed (WebSocket), residents' report streams (SSE) and workers
waiting on a long poll. A case event's id is its cursor, and ids are handed out in commit order
(app/platform/uow.py): once an id is visible, no smaller one will ever commit. So each process
keeps one position in the `case_events` table and reads what committed after it, in id order;
every subscriber receives its events in strictly increasing cursor order, and the last cursor a
client received is always a safe place to resume: nothing below it is still to come.

The hub reads when told that events committed (in this process by `Database.on_events`, from
any process by NOTIFY on PostgreSQL) and at least every `poll_s`, so a lost notification costs
latency, never an event. It does not depend on the bus: with Kafka away the feed still shows
what the API's own commands do.

Resuming: a subscriber registers first, then replays the stored timeline after its cursor, then
takes live events above the last cursor it sent. Subscriptions are indexed by case, report,
grid and street, so an event is matched only against the subscribers it may concern. A
subscriber too slow to keep up is dropped (its queue is bounded) and resumes from its cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Row, Select, Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.scopes import Scope
from app.cases.events import EventEnvelope, EventType, envelope_of
from app.models import CaseEvent
from app.platform.db import EVENTS_CHANNEL, Database

log = logging.getLogger(__name__)
PAGE = 500  # events per read when the hub catches up, and most sent to a subscriber at once
REPLAY_PAGE = 100  # events per read when a subscriber replays: the first ones go out soon
EVENT_COLUMNS = tuple(cast(Table, CaseEvent.__table__).columns)  # plain rows, not ORM objects


class SubscriberTooSlow(Exception):
    """The subscriber's queue overflowed; it should reconnect with its last cursor."""


@dataclass
class FeedFilter:
    grids: frozenset[str] | None = None
    street: str | None = None
    categories: frozenset[str] | None = None
    case_id: str | None = None
    report_id: str | None = None  # until the report's case is known
    scope: Scope | None = None  # a scoped operator's reach: checked before any other filter

    def matches(self, env: EventEnvelope) -> bool:
        if self.scope is not None and not self.scope.covers(env.grid, env.department):
            return False
        if self.case_id is not None:
            if env.case_id != self.case_id:
                return False
        elif self.report_id is not None:
            return env.data.get("report_id") == self.report_id
        if self.grids is not None and env.grid not in self.grids:
            return False
        if self.street is not None and not (env.grid or "").startswith(self.street):
            return False
        return self.categories is None or env.category in self.categories

    def apply(self, stmt: Select[Any]) -> Select[Any]:
        if self.scope is not None:
            stmt = stmt.where(self.scope.events())
        if self.case_id is not None:
            stmt = stmt.where(CaseEvent.case_id == self.case_id)
        if self.grids is not None:
            stmt = stmt.where(CaseEvent.grid_code.in_(self.grids))
        if self.street is not None:
            stmt = stmt.where(CaseEvent.grid_code.startswith(self.street, autoescape=True))
        if self.categories is not None:
            stmt = stmt.where(CaseEvent.category.in_(self.categories))
        return stmt

    @property
    def waiting_for_case(self) -> bool:
        """Following a report whose case is not known yet: nothing stored to replay."""
        return self.case_id is None and self.report_id is not None


@dataclass(eq=False)
class Subscription:
    filter: FeedFilter
    queue: asyncio.Queue[EventEnvelope] = field(default_factory=lambda: asyncio.Queue(maxsize=2000))
    overflowed: bool = False
    keys: tuple[tuple[str, str], ...] = ()  # where the index keeps it

    async def get(self) -> EventEnvelope:
        if self.overflowed:
            raise SubscriberTooSlow("subscriber fell behind; resume from the last cursor")
        return await self.queue.get()


class Subscribers:
    """Subscriptions indexed by what they follow: a case, a report (until its case is known),
    unit grids, a street (a prefix of grid codes), or everything (filtered by category)."""

    def __init__(self) -> None:
        self._by: dict[tuple[str, str], set[Subscription]] = {}
        self._street_lengths: Counter[int] = Counter()
        self._everyone: set[Subscription] = set()
        self._all: set[Subscription] = set()

    def __len__(self) -> int:
        return len(self._all)

    def add(self, sub: Subscription) -> None:
        self._all.add(sub)
        flt = sub.filter
        if flt.case_id is not None:
            sub.keys = (("case", flt.case_id),)
        elif flt.report_id is not None:
            sub.keys = (("report", flt.report_id),)
        elif flt.grids is not None:
            sub.keys = tuple(("grid", g) for g in sorted(flt.grids))
        elif flt.street is not None:
            sub.keys = (("street", flt.street),)
            self._street_lengths[len(flt.street)] += 1
        else:
            self._everyone.add(sub)
            return
        for key in sub.keys:
            self._by.setdefault(key, set()).add(sub)

    def discard(self, sub: Subscription) -> None:
        self._all.discard(sub)
        self._everyone.discard(sub)
        for key in sub.keys:
            subs = self._by.get(key)
            if subs is not None and sub in subs:
                subs.discard(sub)
                if not subs:
                    del self._by[key]
                if key[0] == "street":
                    self._street_lengths[len(key[1])] -= 1
                    if not self._street_lengths[len(key[1])]:
                        del self._street_lengths[len(key[1])]
        sub.keys = ()

    def candidates(self, env: EventEnvelope) -> Iterable[Subscription]:
        """The subscriptions `env` may concern (each still checks its whole filter)."""
        found: list[Subscription] = list(self._everyone)
        if env.case_id is not None:
            found.extend(self._by.get(("case", env.case_id), ()))
        report_id = env.data.get("report_id")
        if isinstance(report_id, str):
            waiting = self._by.get(("report", report_id))
            if waiting:
                for sub in list(waiting):  # the report's case is known now: follow it
                    self.discard(sub)
                    sub.filter.case_id = env.case_id
                    self.add(sub)
                    found.append(sub)
        grid = env.grid or ""
        found.extend(self._by.get(("grid", grid), ()))
        for length in self._street_lengths:
            found.extend(self._by.get(("street", grid[:length]), ()))
        return found


async def replay(
    session: AsyncSession, flt: FeedFilter, after: int, limit: int = REPLAY_PAGE
) -> list[EventEnvelope]:
    """Stored events matching `flt` after cursor `after`, in cursor order."""
    if flt.waiting_for_case:
        return []
    stmt = flt.apply(select(*EVENT_COLUMNS).where(CaseEvent.id > after))
    rows = await session.execute(stmt.order_by(CaseEvent.id).limit(limit))
    return [env for env in map(readable, rows) if env is not None]


def readable(row: Row[Any]) -> EventEnvelope | None:
    """The envelope of a stored event; None (logged) for one this version cannot read, say a
    type a newer dispatcher writes during a rolling upgrade: the feed goes on past it."""
    try:
        return envelope_of(row)
    except ValueError:
        log.warning("live feed: skipping event %s of unknown type %r", row.id, row.type)
        return None


class FeedHub:
    def __init__(self, db: Database, *, poll_s: float = 0.5) -> None:
        self._db = db
        self._poll_s = poll_s
        self._subs = Subscribers()
        self._worker_waiters: dict[str, set[asyncio.Event]] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = asyncio.Event()
        self.position: int | None = None  # the newest cursor read and fanned out
        self.running = False
        db.on_events(lambda _events: self._wake.set())

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    async def start(self) -> None:
        """Start reading in the background from the newest stored event; wait briefly for the
        first read so that live subscribers see everything from now on (the database may be
        away: then it retries)."""
        self._tasks.append(asyncio.create_task(self._run(), name="gridflow-feed"))
        if not self._db.is_sqlite:
            listen = self._db.listen(EVENTS_CHANNEL, self._wake.set, "live feed")
            self._tasks.append(asyncio.create_task(listen, name="gridflow-feed-listen"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._started.wait(), timeout=5)

    async def stop(self) -> None:
        self.running = False
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _run(self) -> None:
        while True:
            try:
                if self.position is None:
                    async with self._db.reader() as session:
                        newest = await session.scalar(select(func.max(CaseEvent.id)))
                    self.position = int(newest or 0)
                    self.running = True
                    self._started.set()
                self._wake.clear()  # a wake-up during the read makes the next one start at once
                await self.catch_up()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll_s):
                        await self._wake.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live feed: cannot read events (%s: %s); retrying", type(exc), exc)
                await asyncio.sleep(1.0)

    async def catch_up(self) -> int:
        """Read and fan out every event committed after `position`; returns how many."""
        assert self.position is not None
        read = 0
        while True:
            async with self._db.reader() as session:
                rows = list(
                    await session.execute(
                        select(*EVENT_COLUMNS)
                        .where(CaseEvent.id > self.position)
                        .order_by(CaseEvent.id)
                        .limit(PAGE)
                    )
                )
            for row in rows:
                env = readable(row)
                if env is not None:
                    self.publish(env)
                self.position = row.id
            read += len(rows)
            if len(rows) < PAGE:
                return read

    def publish(self, env: EventEnvelope) -> None:
        for sub in self._subs.candidates(env):
            if sub.overflowed or not sub.filter.matches(env):
                continue
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

    def follow_case(self, sub: Subscription, case_id: str) -> None:
        """`sub` follows `case_id` from now on (its report's case became known)."""
        self._subs.discard(sub)
        sub.filter.case_id = case_id
        self._subs.add(sub)

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
        case_of: Callable[[], Awaitable[str | None]] | None = None,
    ) -> AsyncIterator[list[EventEnvelope]]:
        """Stored events after `after` (None: live only), then live ones, in cursor order and
        in pages (a replayed page, or the live events waiting); an empty page on idle, to
        send a heartbeat.

        `case_of` (for a filter following a report) reads the report's case once the
        subscription is live and before the replay: if the case is not known then, it opens
        later and its first event arrives live.
        """
        # Live events are those after the hub's first position: before it is read, a stream
        # could replay to N, and N+1 commit before the hub starts above it.
        await self._started.wait()
        with self.subscribe(flt) as sub:
            if case_of is not None and flt.case_id is None:
                case_id = await case_of()
                if case_id is not None:
                    self.follow_case(sub, case_id)
            last = 0
            if after is not None:
                last = after
                while True:
                    async with self._db.reader() as session:
                        page = await replay(session, flt, last)
                    if page:
                        assert page[-1].cursor is not None
                        last = page[-1].cursor
                        yield page
                    if len(page) < REPLAY_PAGE:
                        break
            while True:
                try:
                    # asyncio.timeout, not wait_for: wait_for may swallow the caller's own
                    # cancellation when it coincides with the heartbeat's timeout
                    async with asyncio.timeout(heartbeat_s):
                        waiting = [await sub.get()]
                except TimeoutError:
                    yield []
                    continue
                while len(waiting) < PAGE and not sub.queue.empty():
                    waiting.append(sub.queue.get_nowait())
                live = [e for e in waiting if e.cursor is not None and e.cursor > last]
                if live:  # the others were replayed already
                    assert live[-1].cursor is not None
                    last = live[-1].cursor
                    yield live
