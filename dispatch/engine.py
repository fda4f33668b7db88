"""The running engine: the intake consumer, the SLA sweeper and the retention job, as loops.

Each consumed message is one unit of work: its event id is recorded in the same transaction as
its effects, so a redelivery is a no-op, and the offset is committed only after that transaction
commits. A message that fails for a reason other than an unreachable database is retried a few
times, then written to the dead-letter topic with its error, so it never blocks the ones behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from app.cases.events import EventEnvelope, EventType, ReportReceivedData, enqueue
from app.devices.keys import prune_signatures
from app.models import ProcessedEvent
from app.platform import logs, topics
from app.platform.bus import Bus, Consumer, EmbeddedBus, Message, start_consumer
from app.platform.db import Database, unreachable
from app.platform.outbox import prune_idempotency_keys, prune_outbox
from app.platform.processed import record_new
from app.platform.settings import TracingSettings
from app.platform.shutdown import bounded
from app.platform.tracing import Tracing
from app.platform.uow import UnitOfWork
from app.privacy.retention import Retention, RetentionRun
from dispatch import commands, sla
from dispatch.batch import SlotsTaken
from dispatch.commands import Command, DispatchReport
from dispatch.context import DispatchContext

log = logging.getLogger(__name__)

# What each consumed event asks of the engine (dispatch/commands.py); other types are recorded
# as processed and otherwise ignored.
COMMANDS: dict[EventType, Callable[[EventEnvelope], Command[Any]]] = {
    EventType.REPORT_RECEIVED: lambda e: DispatchReport(
        ReportReceivedData.model_validate(e.data).report_id
    ),
}

DISPATCHER_GROUP = "gridflow-dispatcher"
SLOT_RETRIES = 3  # a batch applied again after finding a slot taken, before going one by one


class Engine:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        ctx: DispatchContext,
        *,
        sweep_interval_s: float = 1.0,
        max_attempts: int = 3,
        group_id: str = DISPATCHER_GROUP,
        batch_size: int = 500,
        outbox_keep_s: int = 24 * 3600,
        prune_interval_s: float = 600,
        tracing: Tracing | None = None,
        retention: Retention | None = None,
        retention_interval_s: float = 3600,
    ) -> None:
        self.retention = retention  # residents' personal data cleared when due
        self.retention_interval_s = retention_interval_s
        self.tracing = tracing or Tracing(TracingSettings())  # off unless given
        self.batch_size = batch_size
        self.outbox_keep_s = outbox_keep_s
        self.prune_interval_s = prune_interval_s
        self.db = db
        self.bus = bus
        self.ctx = ctx
        self.sweep_interval_s = sweep_interval_s
        self.max_attempts = max_attempts
        self.group_id = group_id
        self._consumer: Consumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.consuming = False
        self.processed = 0  # messages applied since start
        self.dead_lettered = 0  # messages given up on since start

    @property
    def consumer(self) -> Consumer | None:
        """The intake consumer, once it has started."""
        return self._consumer

    async def start(self) -> None:
        """Start the consumer (retrying in the background while the bus is down) and the
        sweeper, which needs only the database."""
        self._tasks = [
            asyncio.create_task(self._consume(), name="gridflow-dispatcher"),
            asyncio.create_task(self._sweep_loop(), name="gridflow-sla-clock"),
        ]
        if self.retention is not None:
            # A loop of its own: a first run over years of reports must not hold up the clocks.
            self._tasks.append(
                asyncio.create_task(self._retention_loop(), name="gridflow-retention")
            )

    async def stop(self, grace_s: float = 10.0) -> None:
        """Finish the message in hand and commit it, then leave the group."""
        self._stopping = True
        consume = self._tasks[0] if self._tasks else None
        for task in self._tasks[1:]:
            task.cancel()
        if consume is not None:
            try:
                await asyncio.wait_for(asyncio.shield(consume), timeout=grace_s)
            except TimeoutError:
                consume.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._consumer is not None:
            # Leaving the group at once hands the partitions over without waiting for the
            # session timeout; a broker that does not answer is not waited for.
            await bounded("leaving the intake consumer group", self._consumer.stop(), grace_s)

    async def sweep_once(self) -> int:
        return await sla.sweep(self.db, self.ctx)

    async def process(self, message: Message) -> bool:
        """Apply one message in one transaction. False if it had been applied before."""
        with self.tracing.consumer("dispatch one", [message.value.get("trace")]):
            async with self.db.transaction() as uow:
                return await self._apply(uow, message)

    async def process_batch(self, messages: list[Message]) -> int:
        """`_process_batch` in a span of its own, child of (or linked to) the requests that
        wrote the messages, when tracing is on."""
        with self.tracing.consumer("dispatch batch", [m.value.get("trace") for m in messages]):
            return await self._process_batch(messages)

    async def _process_batch(self, messages: list[Message]) -> int:
        """Apply a fetched batch as one unit of work, in a fixed number of statements: the
        event ids recorded in one INSERT (repeats skipped), the reports dispatched together
        (dispatch/batch.py). A batch that finds a worker's slot taken by another dispatcher
        is applied again from fresh reads; any other failure rolls the whole batch back and
        the caller goes one by one. Returns the messages applied (not seen before)."""
        envelopes = [EventEnvelope.model_validate(m.value) for m in messages]
        for attempt in range(1, SLOT_RETRIES + 1):
            try:
                async with self.db.transaction() as uow:
                    ids = [e.event_id for e in envelopes]
                    now = self.ctx.clock.now()
                    fresh = await record_new(uow.session, self.group_id, ids, now)
                    applied = len(fresh)
                    todo: list[Command[Any]] = []
                    for envelope in envelopes:
                        if envelope.event_id not in fresh:
                            continue  # applied before, or twice in this batch
                        fresh.discard(envelope.event_id)
                        command = COMMANDS.get(envelope.type)
                        if command is not None:
                            todo.append(command(envelope))
                    await commands.handle_many(uow, self.ctx, todo)
                    return applied
            except SlotsTaken:
                if attempt == SLOT_RETRIES:
                    raise
                log.info("a worker's slot was taken meanwhile; applying the batch again")
        raise AssertionError("unreachable")

    async def _apply(self, uow: UnitOfWork, message: Message) -> bool:
        envelope = EventEnvelope.model_validate(message.value)
        if await uow.session.get(ProcessedEvent, (self.group_id, envelope.event_id)):
            return False
        uow.session.add(
            ProcessedEvent(
                group_id=self.group_id,
                event_id=envelope.event_id,
                processed_at=self.ctx.clock.now(),
            )
        )
        command = COMMANDS.get(envelope.type)
        if command is not None:
            await commands.handle(uow, self.ctx, command(envelope))
        return True

    async def _until_db_answers(self, action: Callable[[], Awaitable[object]]) -> Exception | None:
        """Run `action`, retrying for as long as the database is unreachable: a message is never
        dropped for that. Returns the first other error, or None when it succeeded."""
        waits = 0
        while True:
            try:
                await action()
                return None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not unreachable(exc):
                    return exc
                waits += 1
                log.warning("database unavailable while dispatching; retrying: %s", exc)
                await asyncio.sleep(min(5.0, 0.2 * waits))

    async def _handle_batch(self, batch: list[Message]) -> None:
        error = await self._until_db_answers(lambda: self.process_batch(batch))
        if error is not None:
            log.warning("a batch of %d failed (%s); applying one by one", len(batch), error)
            for message in batch:
                await self._handle(message)

    async def _handle(self, message: Message) -> None:
        """Apply one message; after `max_attempts` failures, dead-letter it and move on."""
        event_id = message.value.get("event_id")
        with logs.bind(partition=message.partition, offset=message.offset, event_id=event_id):
            await self._handle_one(message)

    async def _handle_one(self, message: Message) -> None:
        error: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            error = await self._until_db_answers(lambda: self.process(message))
            if error is None:
                return
            log.error(
                "dispatching message %s failed (attempt %d)",
                message.offset,
                attempt,
                exc_info=error,
            )
            if attempt < self.max_attempts:
                await asyncio.sleep(0.05 * attempt)
        assert error is not None
        await self._dead_letter(message, error)

    async def _dead_letter(self, message: Message, exc: Exception) -> None:
        envelope = EventEnvelope.model_validate(message.value)
        async with self.db.transaction() as uow:
            enqueue(
                uow,
                topics.DEAD_LETTER,
                message.key,
                envelope.model_copy(
                    update={
                        "data": {
                            "original": message.value,
                            "topic": message.topic,
                            "offset": message.offset,
                            "error": f"{type(exc).__name__}: {exc}",
                        }
                    }
                ),
            )
        self.dead_lettered += 1

    async def _consume(self) -> None:
        consumer = await start_consumer(self.bus, topics.INTAKE, self.group_id)
        self._consumer = consumer
        self.consuming = True
        while not self._stopping:
            try:
                batch = await consumer.getmany(timeout_s=0.5, max_records=self.batch_size)
                if not batch:
                    continue
                async with consumer.in_hand:
                    # Even a batch of one: the batched path costs a fraction of the one-message
                    # path, which stays the fallback for a batch that fails.
                    await self._handle_batch(batch)
                    self.processed += len(batch)  # applied, whether or not the commit lands
                    await consumer.commit(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("intake consumer error; continuing")
                await asyncio.sleep(1.0)

    async def prune_outbox(self) -> int:
        """Delete done outbox rows and old idempotency keys; returns the outbox rows deleted."""
        now = self.ctx.clock.now()
        await prune_idempotency_keys(self.db, now=now, keep_s=self.outbox_keep_s)
        await prune_signatures(self.db, now)
        return await prune_outbox(
            self.db, now=now, keep_s=self.outbox_keep_s, embedded=isinstance(self.bus, EmbeddedBus)
        )

    async def apply_retention(self) -> RetentionRun:
        """Clear the residents' personal data that is due (app/privacy/retention.py)."""
        assert self.retention is not None
        return await self.retention.run(self.ctx.clock.now())

    async def _retention_loop(self) -> None:
        # The first run a minute after start (sooner for a shorter interval): not at once, beside
        # the start's own work, yet soon enough for a process that restarts often.
        await asyncio.sleep(min(60.0, self.retention_interval_s))
        while True:
            try:
                await self.apply_retention()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention job failed; will retry")
            await asyncio.sleep(self.retention_interval_s)

    async def _sweep_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_prune = loop.time() + self.prune_interval_s
        while True:
            try:
                await self.sweep_once()
                if loop.time() >= next_prune:
                    next_prune = loop.time() + self.prune_interval_s
                    pruned = await self.prune_outbox()
                    if pruned:
                        log.info("pruned %d outbox rows", pruned)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("SLA sweep failed; will retry")
            await asyncio.sleep(self.sweep_interval_s)
