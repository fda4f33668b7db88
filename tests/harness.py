"""A real gridflow server on 127.0.0.1 (random port) inside the test's event loop.

Time is a ManualClock; the SLA sweeper runs only when a test calls `sweep()`. Waiting helpers
poll the database or read the live streams, each bounded in time, and never sleep for SLA time.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
import uvicorn
from PIL import Image
from sqlalchemy import func, select

from app.auth.scopes import parse_scope
from app.auth.tokens import Role, issue_token
from app.devices.keys import sign
from app.http.app import create_app
from app.models import Base, Report
from app.platform.clock import ManualClock
from app.platform.settings import Settings, SlaSettings
from app.runtime import Runtime

T = TypeVar("T")

# A point inside grid 33010600100101's neighbourhood, well inside the demo city.
CITY_POINT = {"lat": 30.2431, "lon": 120.1532}


# Set by deploy/local/with-services.sh: run the suite on PostgreSQL (and Kafka) instead of the
# embedded default.
PG_ADMIN_URL = os.environ.get("GRIDFLOW_TEST_PG_URL")
KAFKA = os.environ.get("GRIDFLOW_TEST_KAFKA")


def make_settings(
    data_dir: Path,
    db_url: str | None = None,
    *,
    kafka_prefix: str | None = None,
    **overrides: Any,
) -> Settings:
    fields: dict[str, Any] = {
        "env": "test",
        "data_dir": data_dir,
        "sla": SlaSettings(sweep_interval_s=3600),
        # Tests send many requests from one address; the limits have tests of their own.
        "limits": {"enabled": False},
        # A scrape reads the database's figures afresh: tests compare one scrape with the next.
        "metrics": {"gauge_cache_s": 0},
        # No checkpoint taken behind a test's back; tests/app/test_checkpoints.py takes them.
        "audit": {"checkpoint_interval_s": 0},
    }
    if db_url:
        fields["db"] = {"url": db_url}
    if KAFKA and kafka_prefix is not None:
        fields["bus"] = {"kind": "kafka", "poll_interval_s": 0.2}
        fields["kafka"] = {
            "bootstrap_servers": KAFKA,
            "topic_prefix": kafka_prefix,
            "partitions": 3,
        }
    fields.update(overrides)
    return Settings(**fields)


def environment_of(s: Settings) -> dict[str, str]:
    """The environment a `gridflow` command reads to reach what `s` describes."""
    return {
        "GRIDFLOW_ENV": s.env,
        "GRIDFLOW_DATA_DIR": str(s.data_dir),
        "GRIDFLOW_DB__URL": s.database_url,
        "GRIDFLOW_BUS__KIND": s.bus.kind,
        "GRIDFLOW_KAFKA__BOOTSTRAP_SERVERS": s.kafka.bootstrap_servers,
        "GRIDFLOW_KAFKA__TOPIC_PREFIX": s.kafka.topic_prefix,
        "GRIDFLOW_KAFKA__PARTITIONS": str(s.kafka.partitions),
        "GRIDFLOW_AUDIT__CHECKPOINT_INTERVAL_S": str(s.audit.checkpoint_interval_s),
    }


def pg_url(database: str) -> str:
    assert PG_ADMIN_URL
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


async def pg_admin(*statements: str) -> None:
    """Run statements on the server's maintenance database (CREATE/DROP DATABASE)."""
    import asyncpg

    assert PG_ADMIN_URL
    conn = await asyncpg.connect(PG_ADMIN_URL.replace("+asyncpg", ""))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def png_bytes(size: tuple[int, int] = (32, 24), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format=fmt)
    return buf.getvalue()


class Harness:
    def __init__(self, settings: Settings, clock: ManualClock, log_level: str = "warning") -> None:
        self.settings = settings
        self.log_level = log_level  # "info" logs every request, as `gridflow serve` does
        self.clock = clock
        self.app = create_app(settings, clock)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.base_url = ""
        self.client: httpx.AsyncClient

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    async def start(self) -> None:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            log_level=self.log_level,
            lifespan="on",
            timeout_graceful_shutdown=1,
            # Longer than the clients' idle expiry (httpx: 5 s), so no client reuses a
            # connection at the moment the server closes it (a ReadError under load).
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(1000):
            if self._server.started or self._task.done():
                break
            await asyncio.sleep(0.01)
        if not self._server.started:
            if self._task.done():
                self._task.result()
            raise RuntimeError("server did not start")
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=20)

    async def stop(self) -> None:
        await self.client.aclose()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, timeout=15)

    # --- identities -------------------------------------------------------------------------
    def token(self, role: Role | str, subject: str, scope: str | None = None) -> str:
        """One of gridflow's own tokens; `scope` (`street:330106001`...) for a scoped one."""
        auth = self.settings.auth
        return issue_token(
            self.runtime.secret,
            role=Role(role),
            subject=subject,
            issuer=auth.issuer,
            audience=auth.audience,
            now=datetime.now(UTC),
            ttl_s=3600,
            scope=parse_scope(scope) if scope else None,
        )

    def auth(self, role: Role | str, subject: str, scope: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, subject, scope)}"}

    async def ticket(self, role: Role | str, subject: str, scope: str | None = None) -> str:
        """A single-use stream ticket, asked for as a client does."""
        r = await self.client.post("/v1/tickets", headers=self.auth(role, subject, scope))
        assert r.status_code == 200, r.text
        ticket: str = r.json()["ticket"]
        return ticket

    async def feed_url(
        self,
        role: Role | str = "operator",
        subject: str = "ops",
        scope: str | None = None,
        **query: Any,
    ) -> str:
        """The WebSocket feed's URL with a fresh ticket and `query` (since=, grid=, ...)."""
        params = {"ticket": await self.ticket(role, subject, scope), **query}
        return self.base_url.replace("http", "ws") + "/v1/feed?" + urlencode(params)

    def device(self, device_id: str = "cam-001") -> dict[str, Any]:
        """The demo device's key id and secret, as seeded."""
        keys = json.loads((self.settings.data_dir / "demo-devices.json").read_text())
        return dict(keys[device_id])

    def signed(
        self,
        body: Any,
        device_id: str = "cam-001",
        *,
        path: str = "/v1/alerts",
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A body and the headers that sign it as the device would."""
        dev = self.device(device_id)
        raw = json.dumps(body).encode()
        stamp = str(timestamp if timestamp is not None else int(self.clock.now().timestamp()))
        return raw, {
            "Content-Type": "application/json",
            "X-Device-Key-Id": dev["key_id"],
            "X-Timestamp": stamp,
            "X-Signature": sign(dev["secret"], stamp, "POST", path, raw),
        }

    async def alert(self, body: Any, device_id: str = "cam-001", **headers: str) -> httpx.Response:
        raw, signed = self.signed(body, device_id)
        return await self.client.post("/v1/alerts", content=raw, headers=signed | headers)

    # --- actions ----------------------------------------------------------------------------
    async def report(
        self,
        resident: str = "alice",
        category: str = "garbage_overflow",
        point: dict[str, float] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        body = {
            "category": category,
            "description": "垃圾桶满了",
            "location": point or CITY_POINT,
            **extra,
        }
        r = await self.client.post(
            "/v1/reports", json=body, headers=self.auth("resident", resident)
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def sweep(self) -> int:
        engine = self.runtime.engine
        assert engine is not None
        return await engine.sweep_once()

    # --- waiting ----------------------------------------------------------------------------
    async def eventually(
        self, probe: Callable[[], Awaitable[T | None]], timeout: float = 10.0, what: str = ""
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = await probe()
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what or probe}")
            await asyncio.sleep(0.02)

    async def case_of(self, report_id: str) -> str:
        async def probe() -> str | None:
            async with self.runtime.db.reader() as s:
                return await s.scalar(select(Report.case_id).where(Report.id == report_id))

        return await self.eventually(probe, what=f"a case for report {report_id}")

    async def case(self, case_id: str) -> dict[str, Any]:
        r = await self.client.get(f"/v1/cases/{case_id}", headers=self.auth("operator", "ops"))
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def case_where(
        self, case_id: str, check: Callable[[dict[str, Any]], bool], what: str = ""
    ) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            c = await self.case(case_id)
            return c if check(c) else None

        return await self.eventually(probe, what=what or f"case {case_id} condition")

    async def offered_task(self, case_id: str, not_worker: str | None = None) -> dict[str, Any]:
        c = await self.case_where(
            case_id,
            lambda c: (
                c["task"] is not None
                and c["task"]["status"] == "offered"
                and c["task"]["worker_id"] != not_worker
            ),
            what="an offered task",
        )
        return dict(c["task"])

    async def counts(self) -> dict[str, int]:
        """Rows per table: to prove a refused request wrote nothing."""
        out: dict[str, int] = {}
        async with self.runtime.db.reader() as s:
            for table in Base.metadata.sorted_tables:
                if table.name in ("seen_signatures", "access_log"):
                    # the replay guard records every verified signature, by design; the access
                    # log is written on its own schedule, whatever the request under test did
                    continue
                out[table.name] = int(await s.scalar(select(func.count()).select_from(table)) or 0)
        return out


async def sse_events(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], until: str, timeout: float = 15
) -> AsyncIterator[dict[str, Any]]:
    """Yield parsed SSE events from `url` until one of type `until` arrives (bounded)."""
    async with asyncio.timeout(timeout):
        async with client.stream("GET", url, headers=headers) as resp:
            assert resp.status_code == 200, await resp.aread()
            fields: dict[str, str] = {}
            async for line in resp.aiter_lines():
                if line == "":
                    if "data" in fields:
                        event = json.loads(fields["data"])
                        event["_id"] = fields.get("id")
                        yield event
                        if event["type"] == until:
                            return
                    fields = {}
                elif not line.startswith(":") and ":" in line:
                    key, _, value = line.partition(":")
                    fields[key] = value.lstrip(" ")


def copy_data(template: Path, target: Path) -> None:
    shutil.copytree(template, target)
