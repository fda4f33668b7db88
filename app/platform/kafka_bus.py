"""The bus on Apache Kafka (aiokafka): consumers with manual commits, topic creation.

Producing is the relay's job (relay.py); this module only consumes. A consumer with a group id
joins that consumer group, starts from the earliest offset when the group is new, and commits
`offset + 1` of each message it was told is done. Its rebalance listener waits for the message
in hand before partitions are taken away, so a revoked partition never loses a commit. A consumer
without a group reads every partition from the end (the live feed of one API process).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError

from app.platform import topics
from app.platform.bus import Message
from app.platform.settings import KafkaSettings

log = logging.getLogger(__name__)


def physical(settings: KafkaSettings, logical: str) -> str:
    return settings.topic_prefix + logical


async def ensure_topics(settings: KafkaSettings) -> list[str]:
    """Create the gridflow topics that do not exist yet. Returns the names created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}-admin",
        request_timeout_ms=settings.request_timeout_ms,
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [physical(settings, t) for t in topics.ALL]
        missing = [t for t in wanted if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process was first
                await admin.create_topics(
                    [NewTopic(t, settings.partitions, settings.replication_factor) for t in missing]
                )
        return missing
    finally:
        await admin.close()


async def delete_topics(settings: KafkaSettings) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id=f"{settings.client_id}-admin"
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = [physical(settings, t) for t in topics.ALL if physical(settings, t) in existing]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


class _WaitForMessageInHand(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, lock: asyncio.Lock, committed: dict[int, int]) -> None:
        self._lock = lock
        self._committed = committed

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # The consume loop holds the lock from fetching a message to committing it.
        async with self._lock:
            log.info("partitions revoked: %s", sorted(str(tp) for tp in revoked))
            for tp in revoked:  # another member may commit them further meanwhile
                self._committed.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned: %s", sorted(str(tp) for tp in assigned))


class KafkaBus:
    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings

    def consumer(self, topic: str, group_id: str | None) -> KafkaConsumer:
        return KafkaConsumer(self.settings, topic, group_id)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class KafkaConsumer:
    def __init__(self, settings: KafkaSettings, topic: str, group_id: str | None) -> None:
        self.settings = settings
        self.topic = topic
        self.group_id = group_id
        self.physical = physical(settings, topic)
        self.in_hand = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._committed: dict[int, int] = {}  # partition -> the offset this member committed

    async def start(self) -> None:
        s = self.settings
        group = None if self.group_id is None else s.topic_prefix + self.group_id
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=f"{s.client_id}-{self.topic}",
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if group else "latest",
            request_timeout_ms=max(s.request_timeout_ms, 11_000),
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            max_poll_interval_ms=300_000,
        )
        await consumer.start()
        if group is None:
            consumer.subscribe([self.physical])
        else:
            consumer.subscribe(
                [self.physical], listener=_WaitForMessageInHand(self.in_hand, self._committed)
            )
        self._consumer = consumer
        if group is None:
            # Fix the starting point now, so nothing produced after start() is skipped.
            await consumer.getmany(timeout_ms=0)
            for tp in consumer.assignment():
                await consumer.position(tp)

    async def getmany(self, timeout_s: float, max_records: int = 100) -> list[Message]:
        assert self._consumer is not None, "start() first"
        batches = await self._consumer.getmany(
            timeout_ms=int(timeout_s * 1000), max_records=max_records
        )
        out: list[Message] = []
        for tp, records in batches.items():
            for record in records:
                try:
                    value = json.loads(record.value)
                except (TypeError, ValueError):
                    log.error(
                        "unreadable message at %s:%s@%s; skipped",
                        tp.topic,
                        tp.partition,
                        record.offset,
                    )
                    value = {"unreadable": True}
                key = record.key.decode() if record.key else ""
                out.append(Message(self.topic, key, value, record.offset, tp.partition))
        return out

    async def commit(self, messages: Sequence[Message]) -> None:
        if self.group_id is None or self._consumer is None or not messages:
            return
        offsets = {TopicPartition(self.physical, m.partition): m.offset + 1 for m in messages}
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # A partition moved to another member; it will see the messages again and the
            # processed-event table makes that harmless.
            log.warning("commit of %s failed: %s", offsets, exc)
            return
        for tp, offset in offsets.items():
            self._committed[tp.partition] = offset

    async def lag(self) -> dict[int, int]:
        """Per assigned partition: its end (the high watermark of the last fetch) less what
        this member committed there, or, before its first commit, its fetch position (where
        the group's committed offset put it). Asks the broker nothing; a partition not yet
        fetched from is left out."""
        consumer = self._consumer
        if consumer is None:
            return {}
        out: dict[int, int] = {}
        for tp in consumer.assignment():
            try:
                end = consumer.highwater(tp)
                if end is None:
                    continue
                done = self._committed.get(tp.partition)
                if done is None:
                    async with asyncio.timeout(1.0):
                        done = await consumer.position(tp)
            except (TimeoutError, KafkaError, AssertionError):
                continue  # taken away meanwhile, or no position yet (a reset in progress)
            out[tp.partition] = max(0, end - done)
        return out

    async def stop(self) -> None:
        """Leave the group. A broker that answers the goodbye with an error (a frozen one times
        the request out) is let go: the group drops a silent member after the session timeout,
        and the offsets committed so far stand, so stopping never fails for it."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except KafkaError as exc:
                log.warning("leaving the consumer group of %s failed (%s)", self.physical, exc)
