"""Fault tests need the real services: they fail, never skip, when those are missing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.platform.clock import ManualClock
from app.platform.kafka_bus import delete_topics
from tests.harness import KAFKA, PG_ADMIN_URL, Harness, copy_data, make_settings

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not (KAFKA and PG_ADMIN_URL):
        for item in items:
            if "tests/faults" in str(item.fspath):
                item.add_marker(pytest.mark.usefixtures("_require_services"))


@pytest.fixture
def _require_services() -> None:
    pytest.fail(
        "fault tests need PostgreSQL and Kafka: run them through "
        "deploy/local/with-services.sh (make unit-services)"
    )


def service(script: str, action: str) -> None:
    """Halt or resume a local service (deploy/local/*.sh) the suite is running on."""
    subprocess.run(
        [str(REPO / "deploy" / "local" / script), action],
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
    )


class Dispatcher:
    """A gridflow command as a real process (`gridflow dispatcher` unless told otherwise), on
    the test's database and topics; started once it prints `ready`."""

    def __init__(
        self,
        env: dict[str, str],
        name: str,
        args: tuple[str, ...] = ("dispatcher",),
        ready: str = "dispatcher: running",
    ) -> None:
        self.env = env
        self.name = name
        self.args = args
        self.ready = ready
        self.proc: asyncio.subprocess.Process | None = None
        self.output: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.output = []
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.cli",
            *self.args,
            cwd=str(REPO),
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        async with asyncio.timeout(60):
            while not any(self.ready in line for line in self.output):
                if self.proc.returncode is not None:
                    raise AssertionError(f"{self.name} exited:\n" + "".join(self.output[-40:]))
                await asyncio.sleep(0.05)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.output.append(line.decode(errors="replace"))

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    async def terminate(self) -> int:
        """SIGTERM, then the number of messages it says it handled."""
        assert self.proc is not None
        self.proc.terminate()
        try:
            async with asyncio.timeout(60):
                await self.proc.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.name} still running 60 s after SIGTERM:\n" + "".join(self.output[-60:])
            ) from None
        if self._reader is not None:
            await self._reader
        for line in self.output:
            if "stopped after" in line:
                return int(line.split("stopped after")[1].split()[0])
        raise AssertionError(f"{self.name} did not stop cleanly:\n" + "".join(self.output[-400:]))

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()


@pytest.fixture
async def api(
    tmp_path: Path, template_data: Path, database_url: str | None
) -> AsyncIterator[Harness]:
    """The HTTP API alone (no engine, no relay): the dispatcher runs as separate processes."""
    data = tmp_path / "data"
    copy_data(template_data, data)
    settings = make_settings(
        data, database_url, kafka_prefix=f"f{uuid.uuid4().hex[:10]}.", run_engine=False
    )
    # The processes beside it run on real time: so does this clock, from now on.
    harness = Harness(settings, ManualClock(datetime.now(UTC)))
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()
        await delete_topics(settings.kafka)


def process_env(api: Harness) -> dict[str, str]:
    """The environment of a gridflow process on the same data, database and topics as `api`."""
    s = api.settings
    return {
        **os.environ,
        "GRIDFLOW_ENV": "test",
        "GRIDFLOW_DATA_DIR": str(s.data_dir),
        "GRIDFLOW_DB__URL": s.database_url,
        "GRIDFLOW_BUS__KIND": "kafka",
        "GRIDFLOW_BUS__POLL_INTERVAL_S": "0.2",
        "GRIDFLOW_KAFKA__BOOTSTRAP_SERVERS": s.kafka.bootstrap_servers,
        "GRIDFLOW_KAFKA__TOPIC_PREFIX": s.kafka.topic_prefix,
        "GRIDFLOW_AUTO_MIGRATE": "false",
        "GRIDFLOW_SLA__SWEEP_INTERVAL_S": "5",
        # As in the harness: no audit checkpoint behind a test's back (test_restore verifies
        # under another key and counts on finding edited events only).
        "GRIDFLOW_AUDIT__CHECKPOINT_INTERVAL_S": str(s.audit.checkpoint_interval_s),
    }


@pytest.fixture
async def dispatchers(api: Harness) -> AsyncIterator[list[Dispatcher]]:
    env = process_env(api)
    made = [Dispatcher(env, f"dispatcher-{i}") for i in range(2)]
    try:
        yield made
    finally:
        for d in made:
            await d.close()
