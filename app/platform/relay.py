"""The outbox relay: publishes committed outbox rows to Kafka, then marks them sent.

The producer is idempotent with acks=all. Rows are published in id order; events of one case
always commit in id order (their transactions lock the case row), so per-key order holds. A row
is marked sent only after Kafka acknowledged it: a crash in between publishes it again, and
consumers drop the repeat by event id. With Kafka down, rows wait in the table (intake keeps
answering 201) and the relay retries with backoff. On PostgreSQL, several relays may run; a
transaction-scoped advisory lock lets one publish at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from sqlalchemy import Text, cast, func, select, update

from app.models import OutboxMessage
from app.platform.clock import Clock, SystemClock
from app.platform.db import OUTBOX_CHANNEL, Database
from app.platform.kafka_bus import physical
from app.platform.settings import KafkaSettings
from app.platform.shutdown import bounded

log = logging.getLogger(__name__)
RELAY_LOCK = 0x67726964  # "grid": the advisory-lock key of the relay


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        settings: KafkaSettings,
        poll_interval_s: float = 0.5,
        clock: Clock | None = None,
    ):
        self.db = db
        self.clock: Clock = clock or SystemClock()
        self.settings = settings
        self.poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self.connected = False
        db.on_commit(self._wake.set)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="gridflow-relay")
        if not self.db.is_sqlite:
            self._listener = asyncio.create_task(self._listen(), name="gridflow-relay-listen")

    async def stop(self) -> None:
        for task in (self._task, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._close_producer()

    async def _listen(self) -> None:
        """Rows committed by other processes (the API's intake) are published at once instead
        of at the next poll."""
        await self.db.listen(OUTBOX_CHANNEL, self._wake.set, "outbox relay")

    async def _producer_ready(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.bootstrap_servers,
                client_id=f"{self.settings.client_id}-relay",
                enable_idempotence=True,
                acks="all",
                linger_ms=2,
                request_timeout_ms=self.settings.request_timeout_ms,
            )
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
            self.connected = True
        return self._producer

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        self.connected = False
        if producer is not None:
            with contextlib.suppress(Exception):
                # Rows not yet acknowledged stay unsent in the outbox for the next relay.
                await bounded("flushing the outbox producer", producer.stop(), 10.0)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                sent = await self.publish_batch()
                failures = 0
                if sent:
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning(
                    "outbox relay: cannot publish (%s: %s); retrying", type(exc).__name__, exc
                )
                await self._close_producer()
                await asyncio.sleep(min(5.0, 0.25 * 2 ** min(failures, 5)))

    async def publish_batch(self) -> int:
        """Publish up to one batch of unsent rows; returns how many were published."""
        async with self.db.reader() as reader:
            if not self.db.is_sqlite:
                got = await reader.scalar(select(func.pg_try_advisory_xact_lock(RELAY_LOCK)))
                if not got:
                    return 0
            rows = list(
                await reader.execute(
                    select(
                        OutboxMessage.id,
                        OutboxMessage.topic,
                        OutboxMessage.key,
                        # the stored JSON's text, published as it is: no decoding and
                        # encoding again of every row
                        cast(OutboxMessage.payload, Text),
                    )
                    .where(OutboxMessage.sent_at.is_(None))
                    .order_by(OutboxMessage.id)
                    .limit(self.settings.relay_batch)
                )
            )
            if not rows:
                return 0
            producer = await self._producer_ready()
            pending = [
                await producer.send(
                    physical(self.settings, topic),
                    value=payload.encode(),
                    key=key.encode(),
                )
                for _, topic, key, payload in rows
            ]
            await asyncio.gather(*pending)
            ids = [row[0] for row in rows]
            async with self.db.transaction() as uow:
                session = uow.session
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(ids))
                    .values(sent_at=self.clock.now())
                )
        return len(rows)
