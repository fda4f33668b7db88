"""Rate limits shared by every API process (app/platform/limiter.py, `limits.store`), on a real
PostgreSQL: one budget over two apps, the database's clock, a slow store waited for at most
its timeout, refusals remembered in the process, pruning. Runs in the services suite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.platform.clock import ManualClock
from app.platform.limiter import Limiter
from app.platform.settings import Bucket, LimitSettings
from tests.app.test_metrics import scrape, value
from tests.app.test_rate_limits import REPORT, SLOW
from tests.conftest import Configured
from tests.harness import PG_ADMIN_URL, Harness, copy_data, make_settings

FAILURES = "gridflow_rate_limit_store_failures_total"
Pair = Callable[..., AbstractAsyncContextManager[tuple[Harness, Harness]]]


@pytest.fixture(autouse=True)
def _needs_postgres() -> None:
    if not PG_ADMIN_URL:
        pytest.fail("run through deploy/local/with-services.sh (make unit-services)")


@pytest.fixture
def pair(tmp_path: Path, template_data: Path, database_url: str) -> Pair:
    """Two API apps on one PostgreSQL database, as two `gridflow api` processes are (each its
    own Runtime and limiter; the same secret, copied from the template's data)."""

    @asynccontextmanager
    async def start(**limits: Any) -> AsyncIterator[tuple[Harness, Harness]]:
        apps: list[Harness] = []
        try:
            for name in ("a", "b"):
                copy_data(template_data, tmp_path / name)
                settings = make_settings(
                    tmp_path / name, database_url, run_engine=False, limits=limits
                )
                apps.append(Harness(settings, ManualClock()))
                await apps[-1].start()
            yield apps[0], apps[1]
        finally:
            for h in apps:
                await h.stop()

    return start


def dsn(database_url: str) -> str:
    return database_url.replace("+asyncpg", "")


async def buckets(database_url: str) -> int:
    conn = await asyncpg.connect(dsn(database_url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM rate_buckets"))
    finally:
        await conn.close()


@asynccontextmanager
async def table_locked(database_url: str) -> AsyncIterator[None]:
    """The buckets' table locked by another session for the block: every take waits on it."""
    conn = await asyncpg.connect(dsn(database_url))
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE rate_buckets IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


async def test_two_api_processes_share_one_budget(pair: Pair, database_url: str) -> None:
    async with pair(enabled=True, reports=SLOW, per_address={"per_minute": 0.01, "burst": 7}) as (
        a,
        b,
    ):
        assert a.runtime.limits.shared is not None  # auto on PostgreSQL
        resident = a.auth("resident", "spam")  # both apps verify it
        codes = [
            (await h.client.post("/v1/reports", json=REPORT, headers=resident)).status_code
            for h in (a, b, a)
        ]
        assert codes == [201, 201, 201]  # the burst of three, over both
        for h in (b, a):  # the next, on either, is over the one budget
            r = await h.client.post("/v1/reports", json=REPORT, headers=resident)
            assert r.status_code == 429 and r.json()["error"] == "rate_limited"
            assert int(r.headers["retry-after"]) >= 60 * 60  # ~100 minutes for the next token
        # The address (127.0.0.1) has spent five of its seven over both apps: two more.
        assert (await b.client.get("/v1/categories")).status_code == 200
        assert (await a.client.get("/v1/categories")).status_code == 200
        r = await b.client.get("/v1/categories")
        assert r.status_code == 429 and "address" in r.json()["detail"]
        assert int(r.headers["retry-after"]) >= 60 * 60
        assert await buckets(database_url) == 2  # the address's and the resident's reports'


async def test_the_process_store_on_postgresql_keeps_a_budget_per_process(
    pair: Pair, database_url: str
) -> None:
    async with pair(enabled=True, store="process", reports=SLOW) as (a, b):
        resident = a.auth("resident", "spam")
        codes = [
            (await h.client.post("/v1/reports", json=REPORT, headers=resident)).status_code
            for h in (a, b, a, b, a, b, a)
        ]
        assert codes == [201] * 6 + [429]  # three in each process
        assert await buckets(database_url) == 0


async def test_a_slow_store_never_holds_a_report(configured: Configured, database_url: str) -> None:
    """The table locked by someone else: the request waits the store's timeout, is limited by
    the process's buckets, answers 201, and the report is stored; the failure is counted."""
    limits = {"enabled": True, "store_timeout_s": 0.2, "store_retry_s": 60}
    async with configured(limits=limits, run_engine=False) as h:
        before = value(await scrape(h), FAILURES, reason="timeout")
        async with table_locked(database_url):
            created = await h.report("patient")  # 201, or it fails
        r = await h.client.get(
            f"/v1/reports/{created['id']}", headers=h.auth("resident", "patient")
        )
        assert r.status_code == 200 and r.json()["id"] == created["id"]
        # One take timed out (the address's); the rest were the process's for store_retry_s.
        assert value(await scrape(h), FAILURES, reason="timeout") == before + 1


async def test_a_slow_store_is_left_alone_until_its_statement_is_back(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[str] = []
    limiter = Limiter(LimitSettings(store_timeout_s=0.2), database_url, on_failure=failures.append)
    shared = limiter.shared
    assert shared is not None
    bucket = Bucket(per_minute=1, burst=1)
    try:
        assert await limiter.take("k", bucket) == 0  # the shared bucket's one token
        with caplog.at_level("INFO", logger="app.platform.limiter"):
            async with table_locked(database_url):
                assert await limiter.take("k", bucket) == 0  # timed out: the process's bucket
                assert failures == ["timeout"] and shared.out  # its statement still waits
                assert await limiter.take("k", bucket) > 0  # the process's, without asking
                assert failures == ["timeout"]
            for _ in range(500):  # the lock is gone: the statement is answered (bounded)
                if not shared.out:
                    break
                await asyncio.sleep(0.01)
            wait = await limiter.take("k", bucket)  # the store again: spent a moment ago
        assert 50 < wait <= 60 and failures == ["timeout"]
        assert "shared store failed (timeout" in caplog.text and "answers again" in caplog.text
    finally:
        await limiter.close()


async def test_the_database_clock_rules_and_refusals_are_remembered(database_url: str) -> None:
    """Two limiters whose own clocks are days apart share one bucket exactly; once refused, a
    key is refused in the process without asking the store until its token is back."""
    failures: list[str] = []
    settings = LimitSettings(store_timeout_s=0.2)
    early = Limiter(settings, database_url, on_failure=failures.append, clock=lambda: 0.0)
    late = Limiter(settings, database_url, on_failure=failures.append, clock=lambda: 86_400.0 * 3)
    bucket = Bucket(per_minute=0.01, burst=3)  # three, then one every 100 minutes
    try:
        assert [await lim.take("key", bucket) for lim in (early, late, early)] == [0, 0, 0]
        waits = [await lim.take("key", bucket) for lim in (late, early)]
        assert all(5_900 < w <= 6_000 for w in waits)
        async with table_locked(database_url):  # a take that asked the store would time out
            assert 5_900 < await early.take("key", bucket) <= 6_000
        assert failures == []
    finally:
        await early.close()
        await late.close()


async def test_takes_at_once_are_batched_and_share_the_budget_exactly(database_url: str) -> None:
    """Eighty takes at once from two processes over four keys (each process's first batch
    asks each key for ten tokens): each bucket gives exactly its burst, whichever process and
    batch the takes were in."""
    one, two = Limiter(LimitSettings(), database_url), Limiter(LimitSettings(), database_url)
    bucket = Bucket(per_minute=0.01, burst=3)
    keys = [f"k{i % 4}" for i in range(40)]  # ten takes of each of four keys
    try:
        waits = await asyncio.gather(*(lim.take(key, bucket) for key in keys for lim in (one, two)))
        given = {key: 0 for key in set(keys)}
        for (key, _), wait in zip(((k, lim) for k in keys for lim in (0, 1)), waits, strict=True):
            given[key] += wait == 0
            assert wait == 0 or 5_900 < wait <= 6_000
        assert given == {"k0": 3, "k1": 3, "k2": 3, "k3": 3}
        # More keys at once than one statement carries: the rest go in the next ones.
        sent = one.shared.sent if one.shared else 0
        many = await asyncio.gather(*(one.take(f"m{i}", bucket) for i in range(600)))
        assert many == [0] * 600 and one.shared is not None and one.shared.sent - sent == 3
    finally:
        await one.close()
        await two.close()


async def test_full_buckets_are_pruned(database_url: str) -> None:
    limiter = Limiter(LimitSettings(), database_url)
    quick = Bucket(per_minute=60, burst=1)  # full again a second after a take
    slow = Bucket(per_minute=0.01, burst=1)
    try:
        assert await limiter.take("quick", quick) == 0
        assert await limiter.take("slow", slow) == 0
        assert await limiter.prune() == 0  # neither is full yet
        conn = await asyncpg.connect(dsn(database_url))
        try:  # as if two seconds had passed
            await conn.execute("UPDATE rate_buckets SET full_at = full_at - interval '2 seconds'")
        finally:
            await conn.close()
        assert await limiter.prune() == 1 and await buckets(database_url) == 1
        assert await limiter.take("quick", quick) == 0  # a pruned bucket is a full one
        assert await limiter.take("slow", slow) > 0  # the spent one was kept
    finally:
        await limiter.close()
