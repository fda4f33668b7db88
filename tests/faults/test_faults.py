"""Faults on the real services: a killed dispatcher, Kafka away, a consumer leaving its group,
PostgreSQL restarting. Every accepted report must become exactly one case, no event lost or
applied twice. Each test is bounded in time."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from sqlalchemy import func, select, text

from app.models import Case, OutboxMessage, ProcessedEvent, Report
from app.platform import topics
from geo.demo_city import EAST, NORTH, SOUTH, WEST
from tests.faults.conftest import Dispatcher, service
from tests.harness import Harness


async def post_reports(
    api: Harness,
    n: int,
    *,
    seed: int,
    concurrency: int = 16,
    after_each: Callable[[int], None] | None = None,
) -> list[str]:
    rng = random.Random(seed)
    points = [
        (rng.uniform(WEST + 0.001, EAST - 0.001), rng.uniform(SOUTH + 0.001, NORTH - 0.001))
        for _ in range(n)
    ]
    headers = api.auth("resident", f"resident-{seed}")
    gate = asyncio.Semaphore(concurrency)
    ids: list[str] = []

    async def one(lon: float, lat: float) -> None:
        async with gate:
            r = await api.client.post(
                "/v1/reports",
                headers=headers,
                json={"category": "garbage_overflow", "location": {"lat": lat, "lon": lon}},
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
            if after_each is not None:
                after_each(len(ids))

    await asyncio.gather(*(one(lon, lat) for lon, lat in points))
    return ids


async def count_dispatched(api: Harness, ids: list[str]) -> int:
    async with api.runtime.db.reader() as s:
        return int(
            await s.scalar(
                select(func.count())
                .select_from(Report)
                .where(Report.id.in_(ids), Report.case_id.is_not(None))
            )
            or 0
        )


async def wait_dispatched(api: Harness, ids: list[str], timeout: float = 180) -> None:
    async def probe() -> bool:
        return await count_dispatched(api, ids) == len(ids)

    await api.eventually(probe, timeout=timeout, what=f"{len(ids)} reports dispatched")


async def assert_exactly_once(api: Harness, ids: list[str]) -> None:
    async with api.runtime.db.reader() as s:
        case_ids = list(await s.scalars(select(Report.case_id).where(Report.id.in_(ids))))
        assert None not in case_ids
        assert len(set(case_ids)) == len(ids), "each resident report is its own case"
        assert await s.scalar(select(func.count()).select_from(Case)) == len(ids)
        per_type = dict(
            (await s.execute(text("SELECT type, count(*) FROM case_events GROUP BY type"))).all()
        )
        assert per_type.get("CaseOpened") == len(ids)
        assert per_type.get("TaskOffered") == len(ids), per_type
        gaps = (
            await s.execute(
                text(
                    "SELECT case_id FROM case_events GROUP BY case_id "
                    "HAVING max(seq) <> count(*) OR min(seq) <> 1"
                )
            )
        ).all()
        assert gaps == [], "every case timeline is complete and never doubled"
        applied = await s.scalar(select(func.count()).select_from(ProcessedEvent))
        assert applied == len(ids), "each intake event applied exactly once"
        dead = await s.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.topic == topics.DEAD_LETTER)
        )
        assert dead == 0


async def test_dispatcher_killed_mid_stream_loses_and_doubles_nothing(
    api: Harness, dispatchers: list[Dispatcher]
) -> None:
    first, again = dispatchers
    await first.start()
    killed = asyncio.Event()

    def maybe_kill(n: int) -> None:
        if n == 150 and not killed.is_set():
            first.kill()  # SIGKILL: no goodbye, no commit
            killed.set()

    async with asyncio.timeout(300):
        ids = await post_reports(api, 500, seed=1, after_each=maybe_kill)
        assert killed.is_set()
        assert await count_dispatched(api, ids) < 500
        await again.start()
        await wait_dispatched(api, ids)
    await assert_exactly_once(api, ids)


async def test_kafka_down_intake_still_accepts_and_catches_up(
    api: Harness, dispatchers: list[Dispatcher]
) -> None:
    dispatcher = dispatchers[0]
    await dispatcher.start()
    async with asyncio.timeout(300):
        before = await post_reports(api, 40, seed=2)
        await wait_dispatched(api, before)
        await asyncio.to_thread(service, "kafka.sh", "halt")
        try:
            during = await post_reports(api, 100, seed=3)  # every one answered 201
            assert await count_dispatched(api, during) == 0
        finally:
            await asyncio.to_thread(service, "kafka.sh", "resume")
        await wait_dispatched(api, during)
    await assert_exactly_once(api, before + during)


async def test_two_dispatchers_share_partitions_and_one_leaves(
    api: Harness, dispatchers: list[Dispatcher]
) -> None:
    one, two = dispatchers
    await one.start()
    await two.start()
    async with asyncio.timeout(300):
        first = await post_reports(api, 150, seed=4)

        async def some_done() -> bool:
            return await count_dispatched(api, first) >= 50

        await api.eventually(some_done, timeout=120, what="dispatching under way")
        left = asyncio.create_task(two.terminate())  # leaves the group mid-stream
        second = await post_reports(api, 150, seed=5)
        handled_by_two = await left
        await wait_dispatched(api, first + second)
        handled_by_one = await one.terminate()
    assert handled_by_two > 0 and handled_by_one > 0
    assert handled_by_one + handled_by_two >= 300
    await assert_exactly_once(api, first + second)


async def test_dispatcher_stops_when_told_while_kafka_is_frozen(
    api: Harness, dispatchers: list[Dispatcher]
) -> None:
    """A broker that keeps its connections open but answers nothing must not hold a stopping
    dispatcher: every shutdown step is bounded, and nothing is lost for the next one."""
    first, again = dispatchers
    await first.start()
    async with asyncio.timeout(300):
        before = await post_reports(api, 30, seed=6)
        await wait_dispatched(api, before)
        await asyncio.to_thread(service, "kafka.sh", "freeze")
        try:
            during = await post_reports(api, 30, seed=7)  # answered 201, waiting in the outbox
            handled = await first.terminate()  # within its 60 s, or it fails
        finally:
            await asyncio.to_thread(service, "kafka.sh", "thaw")
        assert handled == len(before), "".join(first.output[-30:])
        assert any("abandoned" in line for line in first.output), "".join(first.output[-30:])
        await again.start()
        await wait_dispatched(api, during)
    await assert_exactly_once(api, before + during)


async def test_postgres_restart_answers_503_then_recovers(api: Harness) -> None:
    headers = api.auth("resident", "rita")
    body = {"category": "other", "location": {"lat": 30.2431, "lon": 120.1532}}
    assert (await api.client.post("/v1/reports", json=body, headers=headers)).status_code == 201
    await asyncio.to_thread(service, "postgres.sh", "halt")
    try:
        loop = asyncio.get_running_loop()
        for _ in range(3):
            started = loop.time()
            r = await api.client.post("/v1/reports", json=body, headers=headers)
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "database_unavailable"
            assert loop.time() - started < 15  # a clear answer, never a hang
        ready = await api.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"] is False
        r = await api.client.get("/v1/cases", headers=api.auth("operator", "o"))
        assert r.status_code == 503
    finally:
        await asyncio.to_thread(service, "postgres.sh", "resume")

    async def recovered() -> bool:
        r = await api.client.post("/v1/reports", json=body, headers=headers)
        assert r.status_code in (201, 503), r.text
        return r.status_code == 201

    await api.eventually(recovered, timeout=60, what="recovery after the restart")
    assert (await api.client.get("/readyz")).status_code == 200
