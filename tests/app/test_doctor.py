"""`gridflow doctor` on a running installation: the embedded default, or PostgreSQL + Kafka
when the suite runs against them (as CI does)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import update

from app.cli import main
from app.doctor import Status, examine
from app.models import Worker
from app.platform.settings import Settings
from dispatch.holidays import CoverageLevel, calendar_coverage, china, city_today
from tests.harness import Harness, environment_of


def _env(monkeypatch: pytest.MonkeyPatch, s: Settings) -> None:
    for name, value in environment_of(s).items():
        monkeypatch.setenv(name, value)


async def test_a_running_installation_passes(
    h: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    known = datetime(max(china().years), 6, 1, tzinfo=UTC)  # a day the calendar knows all about
    found = {f.check: f for f in await examine(h.settings, now=known)}
    assert set(found) == {
        "settings", "calendar", "database", "clock", "grids", "duty", "policies", "kafka",
    }  # fmt: skip
    assert not [f for f in found.values() if f.status is Status.FAIL], found
    for check in ("settings", "calendar", "database", "clock", "grids", "duty", "policies"):
        assert found[check].status is Status.OK, found[check]
    if h.settings.bus.kind == "kafka":
        assert found["kafka"].status is Status.OK
        assert f"{h.settings.kafka.partitions} partitions each" in found["kafka"].message
        assert "PostgreSQL reachable, at head" in found["database"].message
    else:
        assert found["kafka"].status is Status.SKIP
        assert "SQLite reachable, at head" in found["database"].message

    # The command says the same, one line a check, and exits 0 (1 only on a day whose year the
    # installed calendar does not know: then that is the line that fails).
    calendar = h.settings.sla.calendar
    today = calendar_coverage(calendar, city_today(calendar, datetime.now(UTC)))
    expected = 1 if today.level is CoverageLevel.FAILURE else 0
    _env(monkeypatch, h.settings)
    assert await asyncio.to_thread(main, ["doctor", "--json"]) == expected
    rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    assert [r["check"] for r in rows] == list(found)
    assert [r["check"] for r in rows if r["status"] == "fail"] == ["calendar"] * expected
    assert await asyncio.to_thread(main, ["doctor"]) == expected
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(found) and lines[0].startswith("ok    settings")


async def test_the_calendar_year_by_year(h: Harness) -> None:
    last = max(china().years)

    def on(day: datetime) -> Any:
        return examine(h.settings, now=day)

    mid, december, after = [
        {f.check: f for f in await on(day)}["calendar"]
        for day in (
            datetime(last, 6, 1, tzinfo=UTC),
            datetime(last, 12, 15, tzinfo=UTC),
            datetime(last + 1, 3, 1, tzinfo=UTC),
        )
    ]
    assert mid.status is Status.OK
    assert december.status is Status.WARN and str(last + 1) in december.message
    assert after.status is Status.FAIL and str(last + 1) in after.message


async def test_grids_nobody_staffs_are_a_warning(h: Harness) -> None:
    async with h.runtime.db.transaction() as uow:
        await uow.session.execute(
            update(Worker).where(Worker.grid_code == "33010600100101").values(on_duty=False)
        )
    found = {f.check: f for f in await examine(h.settings)}
    assert found["duty"].status is Status.WARN
    assert "33010600100101" in found["duty"].message
    assert not [f for f in found.values() if f.status is Status.FAIL]


async def test_clocks_apart_from_the_database(h: Harness) -> None:
    def ahead(seconds: float) -> Any:
        return lambda: time.time() + seconds

    near, off, far = [
        {f.check: f for f in await examine(h.settings, wall=ahead(s))}["clock"] for s in (0, 5, 120)
    ]
    if h.runtime.db.is_sqlite:  # one process, one clock: nothing to compare
        assert near.status is off.status is far.status is Status.OK
        assert "one clock" in near.message
    else:
        assert near.status is Status.OK
        assert off.status is Status.WARN and "NTP" in off.message
        assert far.status is Status.FAIL and "SLA deadlines" in far.message


async def test_an_unreachable_broker_fails(h: Harness) -> None:
    s = h.settings.model_copy(
        update={
            "bus": h.settings.bus.model_copy(update={"kind": "kafka"}),
            "kafka": h.settings.kafka.model_copy(update={"bootstrap_servers": "127.0.0.1:1"}),
        }
    )
    found = {f.check: f for f in await examine(s)}
    assert found["kafka"].status is Status.FAIL
    assert "127.0.0.1:1 unreachable" in found["kafka"].message
