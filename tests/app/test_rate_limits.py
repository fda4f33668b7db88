"""Rate limits: token buckets per principal and per address, 429 with Retry-After."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.platform.limiter import Limiter, TokenBuckets
from app.platform.settings import Bucket, LimitSettings, Settings
from tests.app.test_alerts import alert
from tests.conftest import Configured
from tests.harness import CITY_POINT, Harness

SLOW = {"per_minute": 0.01, "burst": 3}  # three, then one every 100 minutes
REPORT = {"category": "garbage_overflow", "location": CITY_POINT}


@pytest.fixture
async def limited(configured: Configured) -> AsyncIterator[Harness]:
    limits: dict[str, Any] = {
        "enabled": True,
        "reports": SLOW,
        "alerts": {"per_minute": 0.01, "burst": 5},
        "per_address": {"per_minute": 0.01, "burst": 40},
    }
    async with configured(limits=limits) as h:
        yield h


async def test_a_resident_over_budget_gets_429_with_retry_after(limited: Harness) -> None:
    h = limited
    for _ in range(3):
        r = await h.client.post("/v1/reports", json=REPORT, headers=h.auth("resident", "spam"))
        assert r.status_code == 201
    before = await h.counts()
    r = await h.client.post("/v1/reports", json=REPORT, headers=h.auth("resident", "spam"))
    assert r.status_code == 429 and r.json()["error"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 60 * 60  # ~100 minutes for the next token
    assert (await h.counts())["reports"] == before["reports"]  # nothing written
    # Another resident has a budget of their own; reading is a different budget.
    r = await h.client.post("/v1/reports", json=REPORT, headers=h.auth("resident", "calm"))
    assert r.status_code == 201
    r = await h.client.get("/v1/cases", headers=h.auth("operator", "ops"))
    assert r.status_code == 200


async def test_sensors_have_their_own_budget(limited: Harness) -> None:
    h = limited
    codes = [(await h.alert(alert(f"e{n}"), "cam-002")).status_code for n in range(6)]
    assert codes == [202] * 5 + [429]
    r = await h.alert(alert("x", category="street_vending"), "cam-003")
    assert r.status_code == 202
    # The residents' budget is untouched by the sensors.
    r = await h.client.post("/v1/reports", json=REPORT, headers=h.auth("resident", "r1"))
    assert r.status_code == 201


async def test_a_replayed_alert_costs_the_device_nothing(limited: Harness) -> None:
    h = limited
    raw, headers = h.signed(alert("first"), "cam-004")
    assert (await h.client.post("/v1/alerts", content=raw, headers=headers)).status_code == 202
    for _ in range(5):  # a captured request sent again: refused, and no token taken
        r = await h.client.post("/v1/alerts", content=raw, headers=headers)
        assert r.status_code == 401 and "replay" in r.json()["detail"]
    codes = [(await h.alert(alert(f"next-{n}"), "cam-004")).status_code for n in range(5)]
    assert codes == [202] * 4 + [429]  # the burst of 5: the first alert and four more


async def test_one_address_has_one_budget_over_everything(limited: Harness) -> None:
    h = limited
    statuses = [(await h.client.get("/v1/categories")).status_code for _ in range(45)]
    assert statuses.count(200) <= 40 and statuses[-1] == 429
    r = await h.client.get("/v1/grids/locate", params=CITY_POINT)
    assert r.status_code == 429 and "retry-after" in r.headers
    assert (await h.client.get("/healthz")).status_code == 200  # probes are never limited


def test_buckets_refill_at_their_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(clock=lambda: now[0])
    bucket = Bucket(per_minute=60, burst=2)
    assert buckets.take("k", bucket) == 0 and buckets.take("k", bucket) == 0
    assert buckets.take("k", bucket) == pytest.approx(1.0)
    now[0] = 0.5
    assert buckets.take("k", bucket) == pytest.approx(0.5)
    now[0] = 1.0
    assert buckets.take("k", bucket) == 0
    now[0] = 100.0  # a long pause refills only up to the burst
    assert [buckets.take("k", bucket) for _ in range(3)][:2] == [0, 0]


def test_buckets_forget_the_least_recent_keys() -> None:
    buckets = TokenBuckets(max_keys=3)
    bucket = Bucket(per_minute=1, burst=1)
    for key in "abcd":
        buckets.take(key, bucket)
    assert buckets.take("a", bucket) == 0  # "a" was forgotten: a fresh bucket
    assert buckets.take("d", bucket) > 0


def test_the_store_follows_the_database(tmp_path: Path) -> None:
    sqlite, pg = "sqlite+aiosqlite:///var/gridflow.db", "postgresql+asyncpg://u@127.0.0.1/gf"
    auto = LimitSettings()
    assert (auto.shared(sqlite), auto.shared(pg)) == (False, True)
    assert not LimitSettings(store="process").shared(pg)
    assert LimitSettings(store="database").shared(pg)
    assert not LimitSettings(enabled=False).shared(pg)
    with pytest.raises(ValueError, match="needs PostgreSQL"):
        LimitSettings(store="database").shared(sqlite)
    with pytest.raises(ValueError, match="needs PostgreSQL"):  # refused with the settings
        Settings(data_dir=tmp_path, limits={"store": "database"})


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (taken from the system, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_store_leaves_the_limits_to_the_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Open, not closed: the process's own buckets answer, nothing waits past the timeout, one
    warning and a count per failed attempt; the store is asked again after store_retry_s."""
    now = [0.0]
    failures: list[str] = []
    url = f"postgresql+asyncpg://gridflow@127.0.0.1:{closed_port()}/gridflow"
    settings = LimitSettings(store="database", store_timeout_s=2, store_retry_s=5)
    limiter = Limiter(settings, url, on_failure=failures.append, clock=lambda: now[0])
    bucket = Bucket(per_minute=1, burst=2)
    with caplog.at_level(logging.INFO, logger="app.platform.limiter"):
        takes = [await limiter.take("k", bucket) for _ in range(3)]
        assert takes == [0, 0, pytest.approx(60)]  # the process's own bucket of two
        assert failures == ["unreachable"]  # one attempt; the others did not ask the store
        now[0] = 5.5
        assert await limiter.take("other", bucket) == 0
        assert failures == ["unreachable", "unreachable"]  # asked again, and failed again
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "shared store failed (unreachable" in warnings[0].message
    await limiter.close()
