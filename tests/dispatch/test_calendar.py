"""Working-time arithmetic across lunch, nights, weekends, holidays and make-up working days."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.platform.settings import SlaSettings
from dispatch.calendar import ALWAYS, WorkingHours, parse_period
from tests.conftest import Configured
from tests.harness import CITY_POINT, Harness

SH = ZoneInfo("Asia/Shanghai")
# A holiday week and the weekend days worked in exchange (调休), given to the arithmetic
# directly (not the 2026 notice's days: those are in test_national_calendar.py).
HOLIDAYS = frozenset(date(2026, 10, d) for d in range(1, 8))
MAKE_UP = frozenset({date(2026, 9, 27), date(2026, 10, 10)})  # a Sunday and a Saturday
CAL = WorkingHours(
    SH,
    (parse_period("09:00-12:00"), parse_period("13:30-18:00")),
    holidays=HOLIDAYS,
    workdays=MAKE_UP,
)
HOUR = 3600


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("start", "seconds", "due"),
    [
        (local(2026, 11, 23, 9, 0), 2 * HOUR, local(2026, 11, 23, 11, 0)),  # Monday morning
        (local(2026, 11, 23, 11, 0), 2 * HOUR, local(2026, 11, 23, 14, 30)),  # over lunch
        (local(2026, 11, 23, 17, 30), HOUR, local(2026, 11, 24, 9, 30)),  # over the night
        (local(2026, 11, 27, 17, 0), 2 * HOUR, local(2026, 11, 30, 10, 0)),  # Friday → Monday
        (local(2026, 11, 28, 10, 0), 1800, local(2026, 11, 30, 9, 30)),  # asked on a Saturday
        (local(2026, 11, 23, 12, 30), 1800, local(2026, 11, 23, 14, 0)),  # asked at lunch
        (local(2026, 11, 23, 18, 0), 60, local(2026, 11, 24, 9, 1)),  # at closing time
        (local(2026, 11, 23, 10, 0), 0, local(2026, 11, 23, 10, 0)),
        (local(2026, 11, 23, 9, 0), 7.5 * HOUR * 2, local(2026, 11, 24, 18, 0)),  # two full days
        (local(2026, 9, 30, 17, 0), 2 * HOUR, local(2026, 10, 8, 10, 0)),  # the holiday week
        (local(2026, 9, 26, 12, 0), HOUR, local(2026, 9, 27, 10, 0)),  # to a make-up Sunday
        (local(2026, 10, 9, 17, 30), HOUR, local(2026, 10, 10, 9, 30)),  # to a make-up Saturday
    ],
)
def test_add_working_time(start: datetime, seconds: float, due: datetime) -> None:
    assert CAL.add(start, seconds) == due
    assert CAL.elapsed(start, due) == pytest.approx(seconds)


def test_elapsed_stops_outside_working_hours() -> None:
    friday_evening = local(2026, 11, 27, 17, 0)
    assert CAL.elapsed(friday_evening, local(2026, 11, 28, 23, 0)) == HOUR  # the weekend: 0
    assert CAL.elapsed(local(2026, 10, 1, 9, 0), local(2026, 10, 7, 18, 0)) == 0  # holidays
    assert CAL.elapsed(local(2026, 11, 23, 12, 5), local(2026, 11, 23, 13, 25)) == 0  # lunch
    assert CAL.elapsed(local(2026, 11, 24, 9, 0), local(2026, 11, 23, 9, 0)) == 0  # reversed


def test_add_and_elapsed_are_inverse_everywhere() -> None:
    rng = random.Random(11)
    base = local(2026, 9, 1, 0, 0)
    for _ in range(500):
        start = base + timedelta(seconds=rng.randrange(0, 90 * 24 * HOUR))
        seconds = rng.choice([0, 1, 59, 3599, rng.randrange(1, 40 * HOUR)])
        due = CAL.add(start, seconds)
        assert due >= start
        assert CAL.elapsed(start, due) == pytest.approx(seconds, abs=1e-6)
        if seconds:  # the due instant is inside working time, never in a pause
            assert CAL.elapsed(due - timedelta(seconds=1), due) == pytest.approx(1.0)


def test_instants_in_any_zone_agree() -> None:
    start_utc = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    assert CAL.add(start_utc, HOUR) == local(2026, 11, 23, 10, 0)


def test_always_on_counts_every_second() -> None:
    start = local(2026, 11, 28, 3, 0)  # a Saturday night
    assert ALWAYS.add(start, 300) == start + timedelta(minutes=5)
    assert ALWAYS.elapsed(start, start + timedelta(hours=2)) == 2 * HOUR


def test_bad_periods_are_refused() -> None:
    with pytest.raises(ValueError):
        WorkingHours(SH, ())
    with pytest.raises(ValueError):
        WorkingHours(SH, ((time(13), time(12)),))
    with pytest.raises(ValueError):
        WorkingHours(SH, ((time(9), time(12)), (time(11), time(14))))


async def report_at_friday_evening(h: Harness, category: str, resident: str) -> dict[str, Any]:
    """Friday 9 January 2026, 17:30 in Shanghai (the harness clock starts Monday 16:00)."""
    target = datetime(2026, 1, 9, 17, 30, tzinfo=SH)
    if h.clock.now() < target:
        h.clock.advance((target - h.clock.now()).total_seconds())
    report = await h.report(resident, category, point=CITY_POINT)
    case_id = await h.case_of(report["id"])
    return await h.case_where(case_id, lambda c: c["deadlines"]["on_site_due_at"] is not None)


def due(case: dict[str, Any], clock: str) -> datetime:
    return datetime.fromisoformat(case["deadlines"][f"{clock}_due_at"]).astimezone(SH)


async def test_working_hours_policies_skip_the_weekend_and_urgent_ones_do_not(h: Harness) -> None:
    garbage = await report_at_friday_evening(h, "garbage_overflow", "r1")
    # 2 working hours: 30 minutes on Friday, then Monday from 09:00.
    assert due(garbage, "on_site") == datetime(2026, 1, 12, 10, 30, tzinfo=SH)
    fire = await report_at_friday_evening(h, "fire_lane_blocked", "r2")
    assert due(fire, "on_site") == datetime(2026, 1, 9, 17, 35, tzinfo=SH)  # 24/7
    categories = {c["code"]: c["calendar"] for c in (await h.client.get("/v1/categories")).json()}
    assert categories["fire_lane_blocked"] == "24x7"
    assert categories["garbage_overflow"] == "working_hours"


async def test_configured_holidays_stop_the_clock(configured: Configured) -> None:
    sla = SlaSettings(sweep_interval_s=3600, calendar={"holidays": ["2026-01-12"]})
    async with configured(sla=sla) as h:
        garbage = await report_at_friday_evening(h, "garbage_overflow", "r3")
        assert due(garbage, "on_site") == datetime(2026, 1, 13, 10, 30, tzinfo=SH)  # Tuesday
