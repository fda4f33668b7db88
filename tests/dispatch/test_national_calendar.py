"""The national calendar by default: the State Council's holidays and make-up working days,
merged with the city's own, and a year the library does not know reported, never silent."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest

from app.gridsets.store import LiveGrids
from app.models import SlaPolicy
from app.platform.clock import ManualClock
from app.platform.settings import CalendarSettings, SlaSettings
from app.runtime import Runtime
from dispatch import timers
from dispatch.calendar import WorkingHours
from dispatch.context import DispatchContext, working_hours
from dispatch.holidays import CoverageLevel, calendar_coverage, china
from tests.harness import copy_data, make_settings

SH = ZoneInfo("Asia/Shanghai")
HOUR = 3600
# The first year the installed library has no notice for (2027 with chinese-calendar 1.11).
UNKNOWN = max(china().years) + 1


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def calendar(**settings: Any) -> WorkingHours:
    return working_hours(SlaSettings(calendar=CalendarSettings(**settings)))


# From the State Council's notices (国务院办公厅关于2025年、2026年部分节假日安排的通知): the days
# off of each period, the weekend days worked in exchange, and the working days either side.
NOTICES = [
    pytest.param(
        days(date(2025, 1, 28), date(2025, 2, 4)),
        8,
        [date(2025, 1, 26), date(2025, 2, 8)],  # Sunday, Saturday
        [date(2025, 1, 27), date(2025, 2, 5)],
        id="2025-spring-festival",
    ),
    pytest.param(
        days(date(2025, 10, 1), date(2025, 10, 8)),  # National Day and Mid-Autumn together
        8,
        [date(2025, 9, 28), date(2025, 10, 11)],  # Sunday, Saturday
        [date(2025, 9, 30), date(2025, 10, 9)],
        id="2025-national-day",
    ),
    pytest.param(
        days(date(2026, 2, 15), date(2026, 2, 23)),
        9,
        [date(2026, 2, 14), date(2026, 2, 28)],  # Saturday, Saturday
        [date(2026, 2, 13), date(2026, 2, 24)],
        id="2026-spring-festival",
    ),
    pytest.param(
        days(date(2026, 10, 1), date(2026, 10, 7)),
        7,
        [date(2026, 9, 20), date(2026, 10, 10)],  # Sunday, Saturday
        [date(2026, 9, 30), date(2026, 10, 8)],
        id="2026-national-day",
    ),
]


@pytest.mark.parametrize(("off", "length", "make_up", "around"), NOTICES)
def test_the_notices_days_off_and_make_up_days_are_the_default(
    off: list[date], length: int, make_up: list[date], around: list[date]
) -> None:
    cal = calendar()
    assert len(off) == length  # the notice's "共N天"
    assert [d for d in off if cal.is_workday(d)] == []
    assert all(d.weekday() >= 5 and cal.is_workday(d) for d in make_up)
    assert all(cal.is_workday(d) for d in around)  # the period ends where the notice says
    # Without the national calendar these are ordinary weekdays and weekends.
    plain = calendar(national="none")
    assert [d for d in off if plain.is_workday(d)] == [d for d in off if d.weekday() < 5]
    assert not any(plain.is_workday(d) for d in make_up)


def test_every_known_day_agrees_with_the_library() -> None:
    cal = calendar()
    for day in days(date(min(china().years), 1, 1), date(max(china().years), 12, 31)):
        assert cal.is_workday(day) == chinese_calendar.is_workday(day), day


def test_the_citys_additions_win_both_ways() -> None:
    cal = calendar(
        holidays=[date(2026, 2, 14), date(2026, 3, 10)],  # a make-up Saturday; a Tuesday
        workdays=[date(2026, 2, 16), date(2026, 3, 14), date(2026, 3, 10)],  # a festival Monday
    )
    assert not cal.is_workday(date(2026, 2, 14))  # the city's day off beats the notice
    assert cal.is_workday(date(2026, 2, 16))  # the city's working day beats the notice
    assert cal.is_workday(date(2026, 3, 14))  # an ordinary Saturday the city works
    assert cal.is_workday(date(2026, 3, 10))  # listed both ways: worked, as before
    assert not cal.is_workday(date(2026, 2, 17))  # the rest of the festival is untouched
    assert cal.is_workday(date(2026, 2, 28))  # and so is the other make-up Saturday


def test_none_keeps_only_the_settings_lists() -> None:
    cal = calendar(national="none", holidays=[date(2026, 3, 10)], workdays=[date(2026, 3, 14)])
    assert cal.is_workday(date(2026, 10, 1))  # a Thursday, National Day
    assert not cal.is_workday(date(2026, 9, 20))  # a Sunday, a make-up day in the notice
    assert not cal.is_workday(date(2026, 3, 10))
    assert cal.is_workday(date(2026, 3, 14))


def test_an_unknown_year_is_the_weekday_rule_and_the_settings_lists() -> None:
    cal = calendar(holidays=[date(UNKNOWN, 1, 1)], workdays=[date(UNKNOWN, 1, 9)])
    first = date(UNKNOWN, 1, 1)
    for day in days(first, date(UNKNOWN, 12, 31)):
        expected = day != first and (day.weekday() < 5 or day == date(UNKNOWN, 1, 9))
        assert cal.is_workday(day) == expected, day


def test_a_working_hours_deadline_over_the_2026_spring_festival() -> None:
    cal = calendar()
    friday = datetime(2026, 2, 13, 16, 0, tzinfo=SH)
    # 15 working hours: 2 on Friday, 7.5 on the make-up Saturday, none from 15 to 23 February,
    # the last 5.5 on Tuesday the 24th.
    assert cal.add(friday, 15 * HOUR) == datetime(2026, 2, 24, 16, 0, tzinfo=SH)
    assert cal.add(friday, 9.5 * HOUR) == datetime(2026, 2, 14, 18, 0, tzinfo=SH)
    assert cal.elapsed(friday, datetime(2026, 2, 24, 0, 0, tzinfo=SH)) == 9.5 * HOUR
    assert cal.elapsed(friday, datetime(2026, 2, 24, 16, 0, tzinfo=SH)) == 15 * HOUR
    # Counting weekdays only, the same clock would fall due inside the festival.
    plain = calendar(national="none")
    assert plain.add(friday, 15 * HOUR) == datetime(2026, 2, 17, 16, 0, tzinfo=SH)


def test_a_case_opened_before_the_festival_is_due_after_it() -> None:
    friday = datetime(2026, 2, 13, 16, 0, tzinfo=SH)
    ctx = DispatchContext(clock=ManualClock(friday), grids=LiveGrids(), sla=SlaSettings())
    policy = SlaPolicy(
        category_code="garbage_overflow",
        priority=1,
        accept_s=600,
        on_site_s=4 * HOUR,
        close_s=15 * HOUR,
        calendar="working_hours",
        verify_s=None,
        warn_at=None,
        max_refusals=3,
        escalation=[],
    )
    _, due = timers.clock_timers(ctx, policy, case_id="c-1", start=friday.astimezone(UTC))
    assert {kind.value: at.astimezone(SH) for kind, at in due.items()} == {
        "on_site": datetime(2026, 2, 14, 11, 0, tzinfo=SH),  # the make-up Saturday
        "close": datetime(2026, 2, 24, 16, 0, tzinfo=SH),
    }


@pytest.mark.parametrize(
    ("today", "level", "this_known", "next_known"),
    [
        (date(UNKNOWN, 1, 4), CoverageLevel.FAILURE, False, False),
        (date(UNKNOWN, 12, 31), CoverageLevel.FAILURE, False, False),
        (date(UNKNOWN - 1, 12, 1), CoverageLevel.WARNING, True, False),
        (date(UNKNOWN - 1, 11, 30), CoverageLevel.OK, True, False),
        (date(UNKNOWN - 2, 12, 31), CoverageLevel.OK, True, True),
    ],
)
def test_coverage_of_this_year_and_the_next(
    today: date, level: CoverageLevel, this_known: bool, next_known: bool
) -> None:
    status = calendar_coverage(CalendarSettings(), today)
    assert (status.level, status.this_year_known, status.next_year_known) == (
        level,
        this_known,
        next_known,
    )
    assert status.national == "cn" and status.this_year == today.year
    assert status.years == china().years
    known = f"{min(china().years)}–{UNKNOWN - 1}"
    assert known in status.message
    if level is not CoverageLevel.OK:
        assert f"not {UNKNOWN}" in status.message
        assert "chinese-calendar" in status.message


def test_a_year_the_city_lists_by_hand_is_a_warning_not_a_failure() -> None:
    # As the failure's message says: the city lists the year's days until a release has them.
    listed = CalendarSettings(holidays=[date(UNKNOWN, 1, 1)], workdays=[date(UNKNOWN, 1, 31)])
    status = calendar_coverage(listed, date(UNKNOWN, 1, 4))
    assert status.level is CoverageLevel.WARNING and not status.this_year_known
    assert "the settings' own" in status.message
    other = CalendarSettings(holidays=[date(UNKNOWN - 1, 10, 1)])  # another year's: no help
    assert calendar_coverage(other, date(UNKNOWN, 1, 4)).level is CoverageLevel.FAILURE


def test_no_national_calendar_is_reported_as_chosen() -> None:
    status = calendar_coverage(CalendarSettings(national="none"), date(UNKNOWN, 3, 1))
    assert status.level is CoverageLevel.OK
    assert status.years == frozenset()
    assert not status.this_year_known
    assert "national = none" in status.message


@pytest.mark.parametrize(
    ("now", "warned"),
    [
        (datetime(UNKNOWN, 3, 1, 2, 0, tzinfo=UTC), f"not {UNKNOWN}: this year"),
        # 30 November in UTC, already 1 December in Shanghai: the city's date counts.
        (datetime(UNKNOWN - 1, 11, 30, 16, 30, tzinfo=UTC), f"not {UNKNOWN}: from 1 January"),
        (datetime(UNKNOWN - 1, 11, 30, 15, 30, tzinfo=UTC), None),
    ],
)
async def test_the_runtime_logs_a_missing_year_once_at_start(
    tmp_path: Path,
    template_data: Path,
    caplog: pytest.LogCaptureFixture,
    now: datetime,
    warned: str | None,
) -> None:
    data = tmp_path / "data"
    copy_data(template_data, data)
    runtime = Runtime(make_settings(data, run_engine=False), ManualClock(now))
    with caplog.at_level(logging.WARNING, logger="dispatch.holidays"):
        await runtime.start(serve_feed=False)
        await runtime.stop()
    messages = [r.getMessage() for r in caplog.records if r.name == "dispatch.holidays"]
    if warned is None:
        assert messages == []
    else:
        assert len(messages) == 1 and warned in messages[0]
