"""Taking a checkpoint (app/cases/checkpoints.py), on demand or when one is due.

One at a time: on PostgreSQL an advisory lock is held while one is computed
(a dispatcher that finds it taken skips its turn; `gridflow audit checkpoint` waits), and the
checkpoint's number is the one after the newest, its primary key: of two takers that read the
same newest one (SQLite, or a lock lost with its connection) only the first to commit writes.

The leaves are read in one streamed query from a read-only session (on SQLite beside the
single writer, not holding it), compared with the previous checkpoint's as they go by; only
the final INSERTs of the row and its chunks take a write transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError

from app.cases.checkpoints import (
    CHUNK,
    LEAVES_DAMAGED,
    MAX_FAULTS,
    VANISHED,
    CheckpointKey,
    Fault,
    Leaf,
    MerkleTree,
    canonical,
    compare,
    current_leaves,
    digest,
    leaves_from,
    newest,
    pack_encoded,
    statement,
    stored_leaves,
)
from app.models import AuditCheckpoint, AuditCheckpointLeaves
from app.platform.clock import Clock
from app.platform.db import Database
from app.platform.shutdown import cancel

log = logging.getLogger(__name__)

LOCK = 0x61756463  # "audc": one checkpoint computed at a time across processes


class _Chunks:
    """The new leaves as they arrive: the tree, the event count and the packed chunks (each
    leaf encoded once, for its hash and its chunk)."""

    def __init__(self) -> None:
        self.tree = MerkleTree()
        self.events = 0
        self.chunks: list[tuple[int, bytes]] = []
        self._pending: list[bytes] = []

    def add(self, leaf: Leaf) -> None:
        encoded = leaf.encoded()
        self.tree.add_hash(hashlib.sha256(b"\x00" + encoded).digest())
        self.events += leaf.seq
        self._pending.append(encoded)
        if len(self._pending) == CHUNK:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.chunks.append((len(self._pending), pack_encoded(self._pending)))
            self._pending = []


@asynccontextmanager
async def _one_at_a_time(db: Database, wait: bool) -> AsyncIterator[bool]:
    """The checkpoint lock for the block (PostgreSQL): a session-level advisory lock on a
    connection of its own in autocommit, so no transaction stays open while the checkpoint is
    computed; released at the end, or with the connection if that is lost."""
    if db.is_sqlite:
        yield True
        return
    async with db.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        if wait:
            await conn.execute(text(f"SELECT pg_advisory_lock({LOCK})"))
            got = True
        else:
            got = bool(await conn.scalar(text(f"SELECT pg_try_advisory_lock({LOCK})")))
        try:
            yield got
        finally:
            if got:
                try:
                    await conn.execute(text(f"SELECT pg_advisory_unlock({LOCK})"))
                except Exception:
                    await conn.invalidate()  # closed: its session's lock goes with it
                    raise


async def take(
    db: Database,
    key: CheckpointKey,
    now: datetime,
    *,
    keep_leaves: int,
    due_after_s: float | None = None,
) -> AuditCheckpoint | None:
    """Take a checkpoint of every case now and store it; return it. With `due_after_s`, only
    if the newest one is at least that old and no other process is taking one (else None).
    Faults against the previous checkpoint are recorded in the new one and logged; the leaves
    of checkpoints older than the newest `keep_leaves` are deleted. On demand, a checkpoint
    another process stored meanwhile (SQLite) makes it start again, up to 3 times."""
    for _ in range(3 if due_after_s is None else 1):
        cp = await _take_once(db, key, now, keep_leaves=keep_leaves, due_after_s=due_after_s)
        if cp is not None:
            return cp
    return None


async def _take_once(
    db: Database,
    key: CheckpointKey,
    now: datetime,
    *,
    keep_leaves: int,
    due_after_s: float | None,
) -> AuditCheckpoint | None:
    async with _one_at_a_time(db, wait=due_after_s is None) as ours:
        if not ours:
            return None
        async with db.reader() as session:
            before = await newest(session)
        if (
            due_after_s is not None
            and before is not None
            and before.taken_at + timedelta(seconds=due_after_s) > now
        ):
            return None
        fresh = _Chunks()
        old_tree, damage = MerkleTree(), list[str]()
        async with db.reader() as reading, db.reader() as side:
            old = (
                stored_leaves(side, before.id, old_tree, damage)
                if before is not None
                else leaves_from(())
            )
            found = await compare(old, current_leaves(reading), side, on_new=fresh.add)
        fresh.flush()
        if before is not None:
            if before.cases and not old_tree.count and not damage:
                damage.append(f"the leaves of checkpoint {before.id} are gone")
            elif old_tree.count != before.cases or old_tree.root() != before.root:
                damage.append(f"the leaves of checkpoint {before.id} do not make its signed root")
        # Damage first: the list is cut at MAX_FAULTS, the counts are not.
        faults = [{"kind": LEAVES_DAMAGED, "message": d} for d in damage]
        faults += [f.as_dict() for f in found]
        cp = AuditCheckpoint(
            id=before.id + 1 if before is not None else 1,
            taken_at=now,
            cases=fresh.tree.count,
            events=fresh.events,
            root=fresh.tree.root(),
            prev_digest=digest(statement(before)) if before is not None else None,
            vanished=sum(1 for f in found if f.kind == VANISHED),
            rolled_back=sum(1 for f in found if f.kind != VANISHED),
            faults=faults[:MAX_FAULTS],
            key_id=key.key_id,
            signature="",
        )
        cp.signature = key.sign(canonical(statement(cp)))
        if not await _store(db, cp, fresh.chunks, keep_leaves):
            return None
    _tell(cp, found, damage)
    return cp


async def _store(
    db: Database, cp: AuditCheckpoint, chunks: list[tuple[int, bytes]], keep_leaves: int
) -> bool:
    """Write the checkpoint and its chunks unless another one was stored since ours began."""
    try:
        async with db.transaction() as uow:
            session = uow.session
            latest = await session.scalar(select(func.max(AuditCheckpoint.id)))
            if (latest or 0) != cp.id - 1:
                return False
            session.add(cp)
            await session.flush()
            session.add_all(
                AuditCheckpointLeaves(checkpoint_id=cp.id, chunk=n, count=count, data=data)
                for n, (count, data) in enumerate(chunks)
            )
            await session.flush()
            await session.execute(
                delete(AuditCheckpointLeaves).where(
                    AuditCheckpointLeaves.checkpoint_id <= cp.id - keep_leaves
                )
            )
    except IntegrityError:
        return False  # the same number, committed by another process first
    return True


def _tell(cp: AuditCheckpoint, found: list[Fault], damage: list[str]) -> None:
    if found or damage:
        log.error(
            "audit checkpoint %d: %d case(s) vanished and %d rolled back since checkpoint %d%s",
            cp.id,
            cp.vanished,
            cp.rolled_back,
            cp.id - 1,
            "; " + "; ".join(damage) if damage else "",
        )
    else:
        log.info("audit checkpoint %d: %d cases, root %s", cp.id, cp.cases, cp.root[:16])


class CheckpointKeeper:
    """Takes a checkpoint whenever the newest one is `interval_s` old (by the injected clock),
    looking every `poll_s` seconds; runs where the engine runs."""

    def __init__(
        self,
        db: Database,
        key: CheckpointKey,
        clock: Clock,
        *,
        interval_s: float,
        keep_leaves: int,
        poll_s: float | None = None,
    ) -> None:
        self.db = db
        self.key = key
        self.clock = clock
        self.interval_s = interval_s
        self.keep_leaves = keep_leaves
        self.poll_s = poll_s if poll_s is not None else min(interval_s, 60.0)
        self._task: asyncio.Task[None] | None = None

    async def take_if_due(self) -> AuditCheckpoint | None:
        return await take(
            self.db,
            self.key,
            self.clock.now(),
            keep_leaves=self.keep_leaves,
            due_after_s=self.interval_s,
        )

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="gridflow-audit-checkpoints")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel(task)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.take_if_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database outage must not end the loop
                log.warning("could not take an audit checkpoint; will retry", exc_info=True)
