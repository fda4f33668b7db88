"""A gridflow without its server: the database, grids and engine of one runtime, driven by
hand on a ManualClock. Intake goes through the intake service, the engine gets the intake
topic's messages when a test says so (one by one, or in batches), and timers fire when it
sweeps. A test may open several worlds side by side (each its own copy of the database)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.models import OutboxMessage
from app.platform import topics
from app.platform.bus import Message
from app.platform.clock import ManualClock
from app.runtime import Runtime
from dispatch.engine import Engine
from tests.harness import PG_ADMIN_URL, copy_data, make_settings, pg_admin, pg_url

BATCH = 100


@dataclass
class World:
    runtime: Runtime
    clock: ManualClock
    engine: Engine
    batched: bool
    read_upto: int = 0
    refusals: list[tuple[str, str, str]] = field(default_factory=list)  # (case, command, error)

    @property
    def ctx(self) -> Any:
        return self.runtime.ctx


@asynccontextmanager
async def world(tmp_path: Path, template: Path, name: str, batched: bool) -> AsyncIterator[World]:
    data = tmp_path / name
    copy_data(template, data)
    url = db_name = None
    if PG_ADMIN_URL:
        db_name = f"gf_{uuid.uuid4().hex[:16]}"
        await pg_admin(f"CREATE DATABASE {db_name} TEMPLATE gridflow_template")
        url = pg_url(db_name)
    clock = ManualClock()
    runtime = Runtime(make_settings(data, url, run_engine=False), clock)
    await runtime.prepare_database()
    engine = Engine(runtime.db, runtime.bus, runtime.ctx, batch_size=BATCH)
    try:
        yield World(runtime, clock, engine, batched)
    finally:
        await runtime.db.dispose()
        if db_name is not None:
            await pg_admin(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")


async def intake_messages(w: World) -> list[Message]:
    """The intake topic's messages the world has not handed out yet."""
    async with w.runtime.db.reader() as s:
        rows = list(
            await s.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.topic == topics.INTAKE, OutboxMessage.id > w.read_upto)
                .order_by(OutboxMessage.id)
            )
        )
    if rows:
        w.read_upto = rows[-1].id
    return [Message(r.topic, r.key, r.payload, r.id) for r in rows]


async def dispatch(w: World) -> None:
    """Hand the intake topic's new messages to the engine: one at a time, or in batches."""
    messages = await intake_messages(w)
    if w.batched:
        for i in range(0, len(messages), BATCH):
            assert await w.engine.process_batch(messages[i : i + BATCH]) == len(
                messages[i : i + BATCH]
            )
    else:
        for message in messages:
            assert await w.engine.process(message)
