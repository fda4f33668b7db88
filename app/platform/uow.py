"""The unit of work: one transaction and what it gathers before it commits.

`Database.transaction()` opens one and hands it to its owner (a request, a consumed batch, a
fired timer). Whoever changes cases receives it: it carries the session, the key that seals case
events, the case events appended so far, the outbox rows to publish, and the policy
set it reads (from the process's `PolicyBook`, checked once per transaction). Nothing travels
through `session.info`.

Case events and outbox rows are written when the unit of work is flushed, just before commit:
one multi-row INSERT of the events (RETURNING their ids, the feed cursors), then the outbox
rows that carry them, after any rows enqueued directly (one COPY on PostgreSQL), so a
transaction pays a fixed number of statements for its events however many it appends.

Case event ids are the feed's cursor, so they must be handed out in commit order: a reader that
has seen id N must never later find a committed id below N (app/platform/feed.py). SQLite has
one writer at a time, which gives that for free. On PostgreSQL a transaction takes the feed lock
(a transaction-scoped advisory lock) just before it writes its first events and keeps it until
it commits, so ids are drawn by one transaction at a time, and PostgreSQL releases the lock only
once the commit is visible. What the lock serialises is short: the events' INSERT, the outbox
rows, any reads the owner does after that, and the commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.cases import audit
from app.cases.events import NewEvent, case_event_outbox_row
from app.models import Case, CaseEvent, OutboxMessage
from app.platform.bulk import insert_rows

if TYPE_CHECKING:
    from app.policies.document import PolicyBook, PolicySet

_EVENTS = cast(Table, CaseEvent.__table__)
_OUTBOX = cast(Table, OutboxMessage.__table__)
_EVENT_COLUMNS = [c.key for c in _EVENTS.columns if c.key != "id"]
_INSERT_EVENTS = insert(_EVENTS).returning(_EVENTS.c.id, sort_by_parameter_order=True)
FEED_LOCK = 0x66656564  # "feed": held from a transaction's first case event to its commit
_TAKE_FEED_LOCK = text(f"SELECT pg_advisory_xact_lock({FEED_LOCK})")


class UnitOfWork:
    def __init__(
        self,
        session: AsyncSession,
        audit_key: bytes | None,
        book: PolicyBook,
        *,
        order_events: bool = False,
    ) -> None:
        self.session = session
        self._order_events = order_events  # take the feed lock before writing events
        self._audit_key = audit_key
        self.book = book  # the process's cached policy set
        self.policy_set: PolicySet | None = None  # the version this transaction uses
        self.events: list[NewEvent] = []  # appended in this transaction, not yet written
        self.written: list[NewEvent] = []  # written in this transaction, in order
        self._outbox: list[dict[str, Any]] = []  # enqueued rows, not yet written
        self.outbox_written = False  # rows were written: relays should look
        self.events_written = False  # case events were written: the live feed should look

    def seal(self, case: Case, event: NewEvent) -> None:
        """Link `event` after the case's newest event and make it the case's head
        (app/cases/audit.py)."""
        if self._audit_key is None:
            raise RuntimeError("this database has no audit key: case events cannot be sealed")
        audit.seal(self._audit_key, case.head_hash or audit.GENESIS, event)
        case.head_hash = event.hash

    def add_event(self, event: NewEvent) -> None:
        self.events.append(event)

    def add_outbox(self, row: dict[str, Any]) -> None:
        """An outbox row (`events.outbox_row`), published only if the transaction commits."""
        self._outbox.append(row)

    async def flush(self) -> None:
        """Write what the session and this unit of work hold: pending ORM changes, then the
        case events (their ids assigned), then the outbox rows. Run before commit; safe to run
        again (only what is new is written)."""
        await self.session.flush()
        events, self.events = self.events, []
        if events:
            if self._order_events and not self.events_written:
                await self.session.execute(_TAKE_FEED_LOCK)
            self.events_written = True
            ids = await self.session.scalars(
                _INSERT_EVENTS, [{k: getattr(e, k) for k in _EVENT_COLUMNS} for e in events]
            )
            for event, event_id in zip(events, ids, strict=True):
                event.id = event_id
            self.written.extend(events)
            self._outbox.extend(case_event_outbox_row(e) for e in events)
        rows, self._outbox = self._outbox, []
        if rows:
            await insert_rows(self.session, _OUTBOX, rows)
            self.outbox_written = True
