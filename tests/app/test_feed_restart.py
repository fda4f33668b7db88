"""The feed through a restart of the server: an operator's client dropping and resuming from its
last cursor every 0.2–0.5 s (a new ticket each time, retrying while the server is away) misses
no event and receives none twice, on the embedded default and on PostgreSQL + Kafka alike."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random

import httpx
import websockets
from sqlalchemy import func, select

from app.models import CaseEvent
from tests.harness import Harness


class Operator:
    def __init__(self, h: Harness) -> None:
        self.h = h  # the server running now
        self.cursor = 0
        self.received: list[int] = []
        self.target: int | None = None
        self.rng = random.Random(5)

    async def run(self) -> None:
        while self.target is None or self.cursor < self.target:
            try:
                url = await self.h.feed_url(since=self.cursor)
                with contextlib.suppress(TimeoutError):
                    async with (
                        asyncio.timeout(self.rng.uniform(0.2, 0.5)),
                        websockets.connect(url) as ws,
                    ):
                        async for raw in ws:
                            event = json.loads(raw)
                            if event["type"] == "heartbeat":
                                continue
                            assert event["cursor"] > self.cursor, "cursors only go up"
                            self.cursor = event["cursor"]
                            self.received.append(self.cursor)
            except (OSError, RuntimeError, websockets.WebSocketException, httpx.HTTPError):
                await asyncio.sleep(0.1)  # the server is away (its client closed, or refused)


async def reports(h: Harness, n: int, tag: str) -> list[str]:
    ids = []
    for i in range(n):
        ids.append((await h.report(f"{tag}-{i}"))["id"])
    return ids


async def test_the_feed_misses_nothing_through_a_server_restart(h: Harness) -> None:
    op = Operator(h)
    client = asyncio.create_task(op.run())
    second: Harness | None = None
    try:
        async with asyncio.timeout(180):
            ids = await reports(h, 30, "before")
            for report_id in ids[-3:]:
                await h.case_of(report_id)
            await h.stop()
            second = Harness(h.settings, h.clock)
            await second.start()
            op.h = second
            ids += await reports(second, 30, "after")
            for report_id in ids:
                await second.case_of(report_id)
            await second.offered_task(await second.case_of(ids[-1]))
            async with second.runtime.db.reader() as s:
                op.target = await s.scalar(select(func.max(CaseEvent.id)))
            await client
            async with second.runtime.db.reader() as s:
                stored = set(await s.scalars(select(CaseEvent.id)))
    finally:
        client.cancel()
        with contextlib.suppress(BaseException):
            await client
        if second is not None:
            await second.stop()
    assert op.received == sorted(set(op.received)), "none twice"
    assert set(op.received) == {c for c in stored if c <= op.cursor}
    assert len(op.received) >= 2 * len(ids)
