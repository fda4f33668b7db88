"""The message bus seen by gridflow: topics, consumers, manual commits.

Two implementations share this interface: the embedded bus below, and Apache Kafka. Publishing
is never done directly: producers write outbox rows in their own transaction (see events.py);
the embedded bus reads those rows as its log, a Kafka relay publishes them.

Embedded semantics mirror Kafka's: a consumer with a group id resumes from its committed
position (at-least-once, so handlers stay idempotent by event id); a consumer without a group
starts at the end of the log, like a fresh group with auto.offset.reset=latest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import func, select

from app.models import ConsumerOffset, OutboxMessage
from app.platform.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    topic: str  # the logical name (app.platform.topics), whatever the bus calls it
    key: str
    value: dict[str, Any]
    offset: int
    partition: int = 0


class Consumer(Protocol):
    # Held from fetching a message to committing it; a rebalance waits for it.
    in_hand: asyncio.Lock

    async def start(self) -> None: ...

    async def getmany(self, timeout_s: float, max_records: int = 100) -> list[Message]:
        """Next messages in order, or [] after `timeout_s` with nothing new."""
        ...

    async def commit(self, messages: Sequence[Message]) -> None:
        """Mark `messages` (a handled batch, in order) and everything before them as done for
        this group: in one request, whatever the number of partitions."""
        ...

    async def lag(self) -> dict[int, int]:
        """Messages of the topic this group has not committed yet, per partition (the ones
        this consumer holds), as far as this consumer knows; for metrics."""
        ...

    async def stop(self) -> None: ...


class Bus(Protocol):
    def consumer(self, topic: str, group_id: str | None) -> Consumer: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def start_consumer(bus: Bus, topic: str, group_id: str | None) -> Consumer:
    """Start a consumer, retrying with backoff until the bus answers (Kafka may be down)."""
    failures = 0
    while True:
        consumer = bus.consumer(topic, group_id)
        try:
            await consumer.start()
            return consumer
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            log.warning(
                "cannot start consumer of %s (%s: %s); retrying", topic, type(exc).__name__, exc
            )
            with contextlib.suppress(Exception):
                await consumer.stop()
            await asyncio.sleep(min(5.0, 0.2 * 2 ** min(failures, 5)))


class EmbeddedBus:
    """The outbox table as the log, for one process. Woken by every committed transaction."""

    def __init__(self, db: Database, poll_interval_s: float = 0.5) -> None:
        self._db = db
        self._poll_interval_s = poll_interval_s
        self._events: set[asyncio.Event] = set()
        db.on_commit(self.wake)

    def wake(self) -> None:
        for event in self._events:
            event.set()

    def consumer(self, topic: str, group_id: str | None) -> EmbeddedConsumer:
        return EmbeddedConsumer(self, topic, group_id)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.wake()


class EmbeddedConsumer:
    def __init__(self, bus: EmbeddedBus, topic: str, group_id: str | None) -> None:
        self._bus = bus
        self._db = bus._db
        self.topic = topic
        self.group_id = group_id
        self._fetched = 0
        self._committed = 0  # the group's position, as this consumer last read or moved it
        self._event = asyncio.Event()
        self.in_hand = asyncio.Lock()

    async def start(self) -> None:
        async with self._db.reader() as s:
            if self.group_id is None:
                last = await s.scalar(
                    select(func.max(OutboxMessage.id)).where(OutboxMessage.topic == self.topic)
                )
            else:
                last = await s.scalar(
                    select(ConsumerOffset.position).where(
                        ConsumerOffset.group_id == self.group_id,
                        ConsumerOffset.topic == self.topic,
                    )
                )
        self._fetched = int(last or 0)
        self._committed = self._fetched
        self._bus._events.add(self._event)

    async def getmany(self, timeout_s: float, max_records: int = 100) -> list[Message]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            self._event.clear()
            batch = await self._read(max_records)
            if batch:
                self._fetched = batch[-1].offset
                return batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                wait = min(remaining, self._bus._poll_interval_s)
                await asyncio.wait_for(self._event.wait(), timeout=wait)

    async def _read(self, max_records: int) -> list[Message]:
        async with self._db.reader() as s:
            rows = await s.execute(
                select(OutboxMessage.id, OutboxMessage.key, OutboxMessage.payload)
                .where(OutboxMessage.topic == self.topic, OutboxMessage.id > self._fetched)
                .order_by(OutboxMessage.id)
                .limit(max_records)
            )
            return [Message(self.topic, key, payload, int(id_)) for id_, key, payload in rows]

    async def commit(self, messages: Sequence[Message]) -> None:
        if self.group_id is None or not messages:
            return
        message = messages[-1]  # one log: the last is the furthest
        async with self._db.transaction() as uow:
            s = uow.session
            row = await s.get(ConsumerOffset, (self.group_id, self.topic))
            now = datetime.now(UTC)
            if row is None:
                s.add(
                    ConsumerOffset(
                        group_id=self.group_id,
                        topic=self.topic,
                        position=message.offset,
                        updated_at=now,
                    )
                )
            elif message.offset > row.position:
                row.position = message.offset
                row.updated_at = now
        self._committed = max(self._committed, message.offset)

    async def lag(self) -> dict[int, int]:
        """The rows of the topic after the group's position: one partition, 0."""
        async with self._db.reader() as s:
            n = await s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.topic == self.topic, OutboxMessage.id > self._committed)
            )
        return {0: int(n or 0)}

    async def stop(self) -> None:
        self._bus._events.discard(self._event)
        self._event.set()
