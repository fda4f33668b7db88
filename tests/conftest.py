from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from app.platform.clock import ManualClock
from app.platform.kafka_bus import delete_topics
from app.runtime import Runtime
from tests.harness import (
    KAFKA,
    PG_ADMIN_URL,
    Harness,
    copy_data,
    make_settings,
    pg_admin,
    pg_url,
)

TEMPLATE_DB = "gridflow_template"


def pytest_report_header() -> str:
    db = "PostgreSQL" if PG_ADMIN_URL else "SQLite"
    bus = f"Kafka at {KAFKA}" if KAFKA else "embedded"
    return f"gridflow database: {db}; bus: {bus}"


@pytest.fixture(scope="session")
def template_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database migrated and seeded once (and its data directory); each test gets a copy."""
    data = tmp_path_factory.mktemp("template") / "data"
    url = None
    if PG_ADMIN_URL:
        asyncio.run(
            pg_admin(
                f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)",
                f"CREATE DATABASE {TEMPLATE_DB}",
            )
        )
        url = pg_url(TEMPLATE_DB)
    runtime = Runtime(make_settings(data, url))

    async def prepare() -> None:
        await runtime.prepare_database()
        await runtime.db.dispose()

    asyncio.run(prepare())
    return data


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def database_url() -> AsyncIterator[str | None]:
    """None for SQLite (the file is in the copied data directory); a fresh database on PG."""
    if not PG_ADMIN_URL:
        yield None
        return
    name = f"gf_{uuid.uuid4().hex[:16]}"
    await pg_admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    try:
        yield pg_url(name)
    finally:
        await pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def h(
    tmp_path: Path, template_data: Path, clock: ManualClock, database_url: str | None
) -> AsyncIterator[Harness]:
    data = tmp_path / "data"
    copy_data(template_data, data)
    settings = make_settings(data, database_url, kafka_prefix=f"t{uuid.uuid4().hex[:10]}.")
    harness = Harness(settings, clock)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()
        if KAFKA:
            await delete_topics(settings.kafka)


Configured = Callable[..., AbstractAsyncContextManager[Harness]]


@pytest.fixture
def configured(tmp_path: Path, template_data: Path, database_url: str | None) -> Configured:
    """A harness with settings of its own: `async with configured(limits={...}) as h:`."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Harness]:
        data = tmp_path / "data"
        copy_data(template_data, data)
        harness = Harness(make_settings(data, database_url, **overrides), ManualClock())
        await harness.start()
        try:
            yield harness
        finally:
            await harness.stop()

    return start
