"""Two dispatchers race for a worker's last free slot: a worker between two grids, one slot,
a case in each grid handled at the same moment by two engines with connections of their own.
Both read the slot as free (a barrier holds each until the other has read); exactly one offer
is made and the other case waits for a retry. On PostgreSQL the two transactions really run at
once; on SQLite, which has one writer, the second runs after the first, to the same end."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app.cases.states import ACTIVE_TASK
from app.intake.service import Location, NewReport, submit_report
from app.models import Case, CaseEvent, Task, Worker
from app.platform.db import Database
from dispatch import assignment, batch
from dispatch.engine import Engine
from tests.dispatch.world import World, intake_messages, world
from tests.harness import PG_ADMIN_URL


async def two_grids_one_worker(w: World) -> tuple[str, list[tuple[float, float]]]:
    """A unit grid whose one worker is the only one on duty in the city, with one slot, and a
    point in it and in a grid that touches it."""
    index = w.runtime.grids.require()
    home = next(g for g in index.units if len(index.neighbours(g.code)) >= 2)
    near = index.get(index.neighbours(home.code)[0])
    assert near is not None
    worker_id = f"w-{home.code}-1"
    async with w.runtime.db.transaction() as uow:
        await uow.session.execute(update(Worker).values(on_duty=False))
        await uow.session.execute(
            update(Worker).where(Worker.id == worker_id).values(on_duty=True, capacity=1)
        )
    points = []
    for grid in (home, near):
        p = grid.geometry.representative_point()
        points.append((p.x, p.y))
    return worker_id, points


def held_at_barrier(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, parties: int) -> None:
    """Make `module.name` wait, after reading, until `parties` callers have read."""
    real: Callable[..., Awaitable[Any]] = getattr(module, name)
    barrier = asyncio.Barrier(parties)
    calls = 0

    async def racing(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        result = await real(*args, **kwargs)
        calls += 1
        if calls <= parties:  # a batch applied again does not wait a second time
            await asyncio.wait_for(barrier.wait(), timeout=10)
        return result

    monkeypatch.setattr(module, name, racing)


@pytest.mark.parametrize("path", ["one_by_one", "batched"])
async def test_two_dispatchers_never_fill_the_last_slot_twice(
    tmp_path: Path, template_data: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    async with world(tmp_path, template_data, "race", batched=path == "batched") as w:
        worker_id, points = await two_grids_one_worker(w)
        for n, (lon, lat) in enumerate(points):
            async with w.runtime.db.transaction() as uow:
                await submit_report(
                    uow,
                    w.runtime.grids,
                    w.runtime.categories,
                    w.clock,
                    w.runtime.photos,
                    NewReport(f"res-{n}", "garbage_overflow", f"race {n}", Location(lat, lon)),
                )
        messages = await intake_messages(w)
        assert len(messages) == 2
        other_db = Database(w.runtime.settings.database_url, audit_key=w.runtime.db.audit_key)
        other = Engine(other_db, w.runtime.bus, w.ctx)
        concurrent = PG_ADMIN_URL is not None
        try:
            if path == "batched":
                if concurrent:
                    held_at_barrier(monkeypatch, batch, "_workers", 2)
                runs = [
                    e.process_batch([m]) for e, m in zip((w.engine, other), messages, strict=True)
                ]
            else:
                if concurrent:
                    held_at_barrier(monkeypatch, assignment, "candidates", 2)
                runs = [e.process(m) for e, m in zip((w.engine, other), messages, strict=True)]
            if concurrent:
                await asyncio.gather(*runs)
            else:
                for run in runs:
                    await run
        finally:
            await other_db.dispose()

        async with w.runtime.db.reader() as s:
            held = await s.scalar(
                select(func.count())
                .select_from(Task)
                .where(Task.worker_id == worker_id, Task.status.in_(ACTIVE_TASK))
            )
            worker = await s.get(Worker, worker_id)
            types = list(
                await s.scalars(
                    select(CaseEvent.type)
                    .join(Case, Case.id == CaseEvent.case_id)
                    .order_by(CaseEvent.id)
                )
            )
        assert worker is not None
        assert held == 1 and worker.open_tasks == 1
        assert types.count("CaseOpened") == 2
        assert types.count("TaskOffered") == 1 and types.count("DispatchFailed") == 1
