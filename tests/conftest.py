from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.core.clock import ManualClock
from app.runtime import Runtime
from tests.harness import Harness, copy_data, make_settings


@pytest.fixture(scope="session")
def template_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory migrated and seeded once; each test gets a copy."""
    data = tmp_path_factory.mktemp("template") / "data"
    runtime = Runtime(make_settings(data))

    async def prepare() -> None:
        await runtime.prepare_database()
        await runtime.db.dispose()

    asyncio.run(prepare())
    return data


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def h(tmp_path: Path, template_data: Path, clock: ManualClock) -> AsyncIterator[Harness]:
    data = tmp_path / "data"
    copy_data(template_data, data)
    harness = Harness(make_settings(data), clock)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()
