"""Read models load N items in a fixed number of queries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, update

from app.models import Worker
from app.reads import worker_tasks
from tests.harness import Harness, png_bytes


@contextmanager
def counted(h: Harness, on: Any) -> Iterator[list[str]]:
    """The statements run on connection `on` meanwhile (not the feed hub's or the relay's
    polls, which run on others whenever they like)."""
    statements: list[str] = []

    def record(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if conn is on and not statement.startswith("BEGIN"):  # SQLite's transaction start
            statements.append(statement)

    engine = h.runtime.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_a_workers_tasks_take_the_same_queries_for_one_or_five(h: Harness) -> None:
    grid = h.runtime.grids.require().units[1]  # one worker
    worker_id = f"w-{grid.code}-1"
    async with h.runtime.db.transaction() as uow:
        await uow.session.execute(update(Worker).where(Worker.id == worker_id).values(capacity=10))
    centre = grid.geometry.representative_point()
    point = {"lat": centre.y, "lon": centre.x}
    counts = []
    for n in (1, 5):
        while True:
            async with h.runtime.db.reader() as s:
                held = len(await worker_tasks(s, worker_id))
            if held >= n:
                break
            body = {"category": "garbage_overflow", "description": "满了", "location": point}
            files = [
                ("report", (None, json.dumps(body))),
                ("photos", ("bin.png", png_bytes(), "image/png")),
            ]
            r = await h.client.post("/v1/reports", files=files, headers=h.auth("resident", "erin"))
            assert r.status_code == 201, r.text
            await h.offered_task(await h.case_of(r.json()["id"]))
        async with h.runtime.db.reader() as s:
            connection = (await s.connection()).sync_connection
            with counted(h, connection) as statements:
                tasks = await worker_tasks(s, worker_id)
        assert len(tasks) == n and all(t.photo_urls for t in tasks)
        counts.append(len(statements))
    assert counts[0] == counts[1] <= 5, counts
