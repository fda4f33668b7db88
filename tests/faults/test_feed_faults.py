"""The live feed misses nothing through faults: two dispatchers applying batches at once, an
operator's WebSocket client and a resident's SSE client that drop and resume from their last
cursor every few hundred milliseconds, the API process serving them SIGKILLed and started
again, and Kafka halted meanwhile. Every event at or below a client's last cursor reached it,
exactly once, and the clients caught up with everything."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket

import httpx
import websockets
from sqlalchemy import func, select

from app.models import CaseEvent
from tests.faults.conftest import Dispatcher, process_env, service
from tests.faults.test_faults import post_reports, wait_dispatched
from tests.harness import CITY_POINT, Harness


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Resuming:
    """A client that connects, reads for 0.3–0.7 s, drops and resumes from its last cursor;
    while the server is away it retries. Stops once it reached `target` (set at the end)."""

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.rng = random.Random(seed)
        self.cursor = 0
        self.received: list[int] = []
        self.connections = 0
        self.target: int | None = None

    def got(self, cursor: int) -> None:
        assert cursor > self.cursor, f"{self.name}: cursor {cursor} after {self.cursor}"
        self.cursor = cursor
        self.received.append(cursor)

    async def run(self) -> None:
        while self.target is None or self.cursor < self.target:
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.rng.uniform(0.3, 0.7)):
                        await self.connection()
                self.connections += 1
            except (OSError, websockets.WebSocketException, httpx.HTTPError):
                await asyncio.sleep(0.2)  # the API is away

    async def connection(self) -> None:
        raise NotImplementedError


class FeedClient(Resuming):
    def __init__(self, base: str, token: str) -> None:
        super().__init__("websocket feed", 1)
        self.base, self.token = base, token

    async def connection(self) -> None:
        # as a browser does: a new single-use ticket for every connection
        async with httpx.AsyncClient(timeout=5) as client:
            r = await client.post(
                f"{self.base}/v1/tickets", headers={"Authorization": f"Bearer {self.token}"}
            )
        r.raise_for_status()
        ticket = r.json()["ticket"]
        url = f"{self.base.replace('http', 'ws')}/v1/feed?ticket={ticket}&since={self.cursor}"
        async with websockets.connect(url) as ws:
            async for raw in ws:
                event = json.loads(raw)
                if event["type"] != "heartbeat":
                    self.got(event["cursor"])


class ReportStream(Resuming):
    def __init__(self, base: str, token: str, report_id: str) -> None:
        super().__init__("report SSE", 2)
        self.base, self.token, self.report_id = base, token, report_id
        self.case_id: str | None = None

    async def connection(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Last-Event-ID": str(self.cursor)}
        url = f"{self.base}/v1/reports/{self.report_id}/events"
        async with (
            httpx.AsyncClient(timeout=5) as client,
            client.stream("GET", url, headers=headers) as resp,
        ):
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    self.case_id = event["case_id"]
                    self.got(event["cursor"])


async def test_feed_and_sse_miss_nothing_through_an_api_kill_and_a_kafka_outage(
    api: Harness, dispatchers: list[Dispatcher]
) -> None:
    for dispatcher in dispatchers:
        await dispatcher.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serving = Dispatcher(
        process_env(api),
        "api",
        ("api", "--port", str(port)),
        ready="Application startup complete",
    )
    await serving.start()
    resident = api.auth("resident", "rita")
    r = await api.client.post(
        "/v1/reports",
        headers=resident,
        json={"category": "garbage_overflow", "location": CITY_POINT},
    )
    assert r.status_code == 201, r.text
    followed = r.json()["id"]
    feed = FeedClient(base, api.token("operator", "ops"))
    stream = ReportStream(base, api.token("resident", "rita"), followed)
    clients = [asyncio.create_task(c.run()) for c in (feed, stream)]
    try:
        async with asyncio.timeout(420):
            ids = [followed]
            ids += await post_reports(api, 200, seed=11)
            serving.kill()  # SIGKILL: no goodbye
            assert serving.proc is not None
            await serving.proc.wait()
            ids += await post_reports(api, 150, seed=12)
            await serving.start()
            ids += await post_reports(api, 100, seed=13)
            await asyncio.to_thread(service, "kafka.sh", "halt")
            try:
                ids += await post_reports(api, 150, seed=14)  # answered 201 meanwhile
                await asyncio.sleep(5)
            finally:
                await asyncio.to_thread(service, "kafka.sh", "resume")
            ids += await post_reports(api, 200, seed=15)
            await wait_dispatched(api, ids, timeout=240)
            async with api.runtime.db.reader() as s:
                feed.target = await s.scalar(select(func.max(CaseEvent.id)))
                stream.target = await s.scalar(
                    select(func.max(CaseEvent.id)).where(CaseEvent.case_id == stream.case_id)
                )
            try:
                async with asyncio.timeout(60):
                    await asyncio.gather(*clients)  # each catches up with everything
            except TimeoutError:
                state = [(c.name, c.cursor, c.target, c.connections) for c in (feed, stream)]
                errors = [line for line in serving.output if "Error" in line or "error" in line]
                raise AssertionError(
                    f"a client did not catch up: {state}\n" + "".join(errors[-20:])
                ) from None
    finally:
        for task in clients:
            task.cancel()
        await serving.close()

    async with api.runtime.db.reader() as s:
        events = list(await s.execute(select(CaseEvent.id, CaseEvent.case_id)))
    assert feed.connections > 20 and stream.connections > 20
    assert set(feed.received) == {e.id for e in events if e.id <= feed.cursor}
    assert len(feed.received) == len(set(feed.received))
    assert stream.case_id is not None
    of_case = {e.id for e in events if e.case_id == stream.case_id and e.id <= stream.cursor}
    assert set(stream.received) == of_case and len(of_case) >= 2
    assert len(feed.received) >= 2 * len(ids)  # CaseOpened and TaskOffered at least
