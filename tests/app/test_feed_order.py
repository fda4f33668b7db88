"""The live feed misses nothing: writers whose transactions commit out of the order they drew
their event ids in, while feed clients drop and resume from their last cursor every few hundred
milliseconds. Every client ends with every event its filter matches, none twice, each
connection in increasing cursor order. On PostgreSQL the writers run at once on connections
of their own (the feed lock orders them); on SQLite, which has one writer, they queue."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from sqlalchemy import func, select, update

from app.cases.events import EventType, append_case_event
from app.intake.service import Location, NewReport, submit_report
from app.models import Case, CaseEvent, Worker
from app.platform.db import Database
from app.platform.feed import FeedFilter, FeedHub
from geo.demo_city import EAST, NORTH, SOUTH, WEST
from tests.dispatch.world import World, dispatch, world

WRITERS = 4
ROUNDS = 12


async def open_cases(w: World, n: int) -> list[str]:
    async with w.runtime.db.transaction() as uow:
        await uow.session.execute(update(Worker).values(on_duty=False))  # cases stay unassigned
    rng = random.Random(7)
    for i in range(n):
        lon, lat = (
            rng.uniform(WEST + 0.002, EAST - 0.002),
            rng.uniform(SOUTH + 0.002, NORTH - 0.002),
        )
        async with w.runtime.db.transaction() as uow:
            await submit_report(
                uow,
                w.runtime.grids,
                w.runtime.categories,
                w.clock,
                w.runtime.photos,
                NewReport(f"res-{i}", "garbage_overflow", f"feed {i}", Location(lat, lon)),
            )
    await dispatch(w)
    async with w.runtime.db.reader() as s:
        return list(await s.scalars(select(Case.id).order_by(Case.id)))


async def writer(db: Database, w: World, case_ids: list[str], seed: int) -> None:
    """Transactions of 1 to 60 events each that hold their drawn ids for a while before they
    commit: a small one started later commits before a large one started earlier."""
    rng = random.Random(seed)
    for _ in range(ROUNDS):
        picked = sorted(rng.choice(case_ids) for _ in range(rng.choice((1, 2, 5, 60))))
        async with db.transaction() as uow:
            for case_id in picked:  # locked in one order: writers never deadlock
                case = await uow.session.get(Case, case_id, with_for_update=True)
                assert case is not None
                append_case_event(
                    uow, case, EventType.SLA_WARNING, actor="system", now=w.clock.now()
                )
            await uow.flush()  # the ids are drawn here
            await asyncio.sleep(rng.uniform(0, 0.06))
        await asyncio.sleep(rng.uniform(0, 0.02))


async def client(
    hub: FeedHub, flt: FeedFilter, seed: int, received: list[int], done: asyncio.Event
) -> None:
    """Connect, take events for 100–400 ms, drop, resume from the last cursor; until told the
    writers are done and a connection found nothing new for a while."""
    rng = random.Random(seed)
    cursor = 0
    while True:
        got = 0
        connection: list[int] = []
        with_deadline = asyncio.timeout(rng.uniform(0.1, 0.4))
        try:
            async with with_deadline:
                async for page in hub.stream(flt, cursor, heartbeat_s=0.05):
                    for env in page:
                        assert env.cursor is not None
                        connection.append(env.cursor)
                        received.append(env.cursor)
                        cursor = env.cursor
                        got += 1
        except TimeoutError:
            pass
        assert connection == sorted(set(connection)), "each connection in cursor order"
        if done.is_set() and got == 0:
            return


async def test_resuming_clients_miss_nothing_while_writers_commit_out_of_order(
    tmp_path: Path, template_data: Path
) -> None:
    async with world(tmp_path, template_data, "feed", batched=True) as w:
        case_ids = await open_cases(w, 24)
        async with w.runtime.db.reader() as s:
            cases = {c.id: c for c in await s.scalars(select(Case))}
        followed = case_ids[3]
        street = cases[followed].grid_code[:9]
        grids = frozenset(cases[c].grid_code for c in case_ids[:6])
        filters = {
            "everything": FeedFilter(),
            "everything-again": FeedFilter(),
            "one case": FeedFilter(case_id=followed),
            "grids": FeedFilter(grids=grids),
            "street": FeedFilter(street=street),
        }
        hub = FeedHub(w.runtime.db, poll_s=0.2)
        await hub.start()
        # Each writer has connections of its own: on PostgreSQL they really run at once.
        dbs = [
            Database(w.runtime.settings.database_url, audit_key=w.runtime.db.audit_key)
            for _ in range(WRITERS)
        ]
        done = asyncio.Event()
        received: dict[str, list[int]] = {name: [] for name in filters}
        try:
            async with asyncio.timeout(120):
                clients = [
                    asyncio.create_task(client(hub, flt, n, received[name], done))
                    for n, (name, flt) in enumerate(filters.items())
                ]
                await asyncio.gather(
                    *(writer(db, w, case_ids, seed) for seed, db in enumerate(dbs))
                )
                # Done once the hub has read the last event: a client that then finds nothing
                # new has everything (a busy machine can delay the hub's poll past a short
                # connection, which is not a miss).
                async with w.runtime.db.reader() as s:
                    last = int(await s.scalar(select(func.max(CaseEvent.id))) or 0)
                for _ in range(6000):  # bounded by the timeout above too
                    if (hub.position or 0) >= last:
                        break
                    await asyncio.sleep(0.02)
                done.set()
                await asyncio.gather(*clients)
        finally:
            await hub.stop()
            for db in dbs:
                await db.dispose()

        async with w.runtime.db.reader() as s:
            events = list(
                await s.execute(select(CaseEvent.id, CaseEvent.case_id, CaseEvent.grid_code))
            )
        expected = {
            "everything": {e.id for e in events},
            "everything-again": {e.id for e in events},
            "one case": {e.id for e in events if e.case_id == followed},
            "grids": {e.id for e in events if e.grid_code in grids},
            "street": {e.id for e in events if e.grid_code.startswith(street)},
        }
        assert len(expected["everything"]) > WRITERS * ROUNDS
        for name, cursors in received.items():
            assert set(cursors) == expected[name], name
            assert len(cursors) == len(set(cursors)), f"{name}: an event sent twice"


async def test_an_event_this_version_cannot_read_is_skipped_not_a_stall(
    tmp_path: Path, template_data: Path
) -> None:
    """A type written by a newer dispatcher during a rolling upgrade: logged and passed over."""
    async with world(tmp_path, template_data, "future", batched=True) as w:
        case_id = (await open_cases(w, 1))[0]
        hub = FeedHub(w.runtime.db, poll_s=0.1)
        await hub.start()
        try:
            for _ in range(2):
                async with w.runtime.db.transaction() as uow:
                    case = await uow.session.get(Case, case_id)
                    assert case is not None
                    append_case_event(
                        uow, case, EventType.SLA_WARNING, actor="system", now=w.clock.now()
                    )
            async with w.runtime.db.transaction() as uow:  # as a newer version writes one
                future = await uow.session.scalar(
                    select(func.max(CaseEvent.id)).where(CaseEvent.case_id == case_id)
                )
                await uow.session.execute(
                    update(CaseEvent)
                    .where(CaseEvent.id == int(future or 0) - 1)
                    .values(type="SomethingNewer")
                )
            got: list[str] = []
            async with asyncio.timeout(10):
                async for page in hub.stream(FeedFilter(case_id=case_id), 0, heartbeat_s=0.1):
                    got += [e.type.value for e in page]
                    if got.count("SlaWarning") == 1 and hub.position == future:
                        break
            assert "SomethingNewer" not in got and got[-1] == "SlaWarning"
        finally:
            await hub.stop()
