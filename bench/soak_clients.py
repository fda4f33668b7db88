"""The soak's live-feed clients (bench/soak.py): dashboards on the WebSocket feed and residents
following their reports over SSE. Each drops its connection now and then and resumes from its
last cursor, and keeps every cursor it received, to be checked against the database."""

from __future__ import annotations

import asyncio
import io
import json
import random
import time
from typing import TYPE_CHECKING

import httpx
import websockets

from app.auth.tokens import Role

if TYPE_CHECKING:
    from bench.soak import Soak


def photo(rng: random.Random) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (64, 48), (rng.randrange(256), rng.randrange(256), 80))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


class Resuming:
    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.rng = random.Random(seed)
        self.cursor = 0
        self.received: list[int] = []
        self.connections = 0
        self.out_of_order = 0
        self.open = False

    def got(self, cursor: int) -> None:
        if cursor <= self.cursor:
            self.out_of_order += 1
        self.cursor = max(self.cursor, cursor)
        self.received.append(cursor)


class Dashboard(Resuming):
    """An operations screen on `/v1/feed`: a new ticket for every connection, each connection
    held 20–60 s, resumed with `since=<last cursor>`. Stops once it reached `target`."""

    def __init__(self, soak: Soak, name: str, seed: int) -> None:
        super().__init__(name, seed)
        self.soak = soak
        self.target: int | None = None

    def done(self) -> bool:
        return self.target is not None and self.cursor >= self.target

    async def run(self) -> None:
        soak = self.soak
        headers = soak.bearer(Role.OPERATOR, self.name)
        ws_base = soak.base.replace("http", "ws", 1)
        for _ in range(100_000):
            if self.done():
                return
            r = await soak.call("ticket", "POST", "/v1/tickets", headers=headers)
            if r is None or r.status_code != 200:
                await asyncio.sleep(1)
                continue
            url = f"{ws_base}/v1/feed?ticket={r.json()['ticket']}&since={self.cursor}"
            try:
                async with (
                    asyncio.timeout(self.rng.uniform(20, 60)),
                    websockets.connect(url, max_size=None) as ws,
                ):
                    self.connections += 1
                    async for raw in ws:
                        event = json.loads(raw)
                        if event["type"] != "heartbeat":
                            self.got(event["cursor"])
                            if self.done():
                                return
            except TimeoutError:
                pass  # the planned drop
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else "none"
                soak.closes[f"{self.name} closed {code}"] += 1
            except (OSError, websockets.WebSocketException) as exc:
                soak.failures[f"feed {type(exc).__name__}"] += 1
                await asyncio.sleep(1)


class Follower(Resuming):
    """A resident following their report over SSE until its case closes: by a ticket in the
    query (as EventSource does) or by the Authorization header; each connection held 5–30 s,
    resumed with Last-Event-ID."""

    def __init__(self, soak: Soak, report_id: str, resident: str, *, ticket: bool) -> None:
        super().__init__(f"follower {report_id}", int(report_id.replace("-", "")[:8], 16))
        self.soak = soak
        self.report_id = report_id
        self.resident = resident
        self.ticket = ticket
        self.case_id: str | None = None
        self.saw_closed = False

    async def run(self, deadline: float) -> None:
        soak = self.soak
        auth = soak.bearer(Role.RESIDENT, self.resident)
        path = f"/v1/reports/{self.report_id}/events"
        for _ in range(1000):
            left = deadline - time.monotonic()
            if left <= 0 or self.saw_closed:
                return
            params: dict[str, str] = {}
            headers: dict[str, str] = {}
            if self.ticket:
                r = await soak.call("ticket", "POST", "/v1/tickets", headers=auth)
                if r is None or r.status_code != 200:
                    await asyncio.sleep(1)
                    continue
                params["ticket"] = r.json()["ticket"]
            else:
                headers |= auth
            if self.cursor:
                headers["Last-Event-ID"] = str(self.cursor)
            try:
                async with (
                    asyncio.timeout(min(left, self.rng.uniform(5, 30))),
                    soak.streams.stream("GET", path, params=params, headers=headers) as resp,
                ):
                    soak.answers[f"report events {resp.status_code}"] += 1
                    if resp.status_code != 200:
                        await asyncio.sleep(1)
                        continue
                    self.open = True
                    self.connections += 1
                    await self._read(resp)
            except TimeoutError:
                pass  # the planned drop, or the end
            except httpx.HTTPError as exc:
                soak.failures[f"report events {type(exc).__name__}"] += 1
                await asyncio.sleep(1)
            finally:
                self.open = False

    async def _read(self, resp: httpx.Response) -> None:
        fields: dict[str, str] = {}
        async for line in resp.aiter_lines():
            if line:
                if not line.startswith(":") and ":" in line:
                    key, _, value = line.partition(":")
                    fields[key] = value.lstrip(" ")
                continue
            if "data" in fields and "id" in fields:
                event = json.loads(fields["data"])
                self.case_id = event["case_id"]
                self.got(int(fields["id"]))
                if event["type"] == "CaseClosed":
                    self.saw_closed = True
                    return
            fields = {}
