"""Which days are working days: the country's published calendar merged with the city's own.

Mainland China's public holidays and make-up working days (调休) are set each year by the State
Council's notice, usually published in November or December for the year after. The
`chinese-calendar` library carries those notices; it is read once per process into plain sets of
dates (`china()`), so the working-hours arithmetic stays a set lookup.

The city's settings (`sla.calendar.holidays` / `workdays`) are additions that win both ways: a
listed holiday is a day off even if the notice makes it a make-up working day, and a listed
workday is worked even if the notice gives it off.

A year the library does not know yet has no national days: its working days are the weekdays
plus the settings' lists, which is all that can be known. That is never silent:
`calendar_coverage` reports it (`gridflow doctor`) and `Runtime.start` logs it once.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

import chinese_calendar
from chinese_calendar import constants

from app.platform.settings import CalendarSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NationalCalendar:
    """A country's days off and make-up working days, and the years its source knows.

    `holidays` lists every day off of a holiday period (weekend days within it too); `workdays`
    the weekend days worked in exchange. Neither has a day outside `years`.
    """

    name: str
    years: frozenset[int]
    holidays: frozenset[date]
    workdays: frozenset[date]
    package: str = ""  # the library the days come from, for messages ("chinese-calendar")
    version: str = ""


NO_NATIONAL = NationalCalendar("none", frozenset(), frozenset(), frozenset())


@functools.cache
def china() -> NationalCalendar:
    """Mainland China's calendar from `chinese-calendar`, read once per process."""
    holidays = frozenset(constants.holidays)
    workdays = frozenset(constants.workdays)
    # The library answers for every year from its first to its last notice (and raises
    # NotImplementedError outside them); so does this calendar.
    first, last = min(d.year for d in holidays), max(d.year for d in holidays)
    return NationalCalendar(
        "cn",
        frozenset(range(first, last + 1)),
        holidays,
        workdays,
        package="chinese-calendar",
        version=chinese_calendar.__version__,
    )


def national_calendar(settings: CalendarSettings) -> NationalCalendar:
    """The national calendar the settings choose (`sla.calendar.national`)."""
    return china() if settings.national == "cn" else NO_NATIONAL


@dataclass(frozen=True)
class WorkingDays:
    """The merged days a `WorkingHours` calendar takes: a day in `workdays` is worked, a day in
    `holidays` (and not in `workdays`) is not, any other day follows the weekday rule."""

    holidays: frozenset[date]
    workdays: frozenset[date]


def working_days(settings: CalendarSettings) -> WorkingDays:
    """The national calendar's days with the settings' own on top (the city's additions win).

    A day the settings list in both `holidays` and `workdays` is worked, as it always was.
    """
    national = national_calendar(settings)
    own_off, own_on = frozenset(settings.holidays), frozenset(settings.workdays)
    return WorkingDays(
        holidays=(national.holidays - own_on) | own_off,
        workdays=(national.workdays - own_off) | own_on,
    )


class CoverageLevel(StrEnum):
    OK = "ok"
    WARNING = "warning"  # December, and next year's notice is not known yet
    FAILURE = "failure"  # this year's notice is not known: holidays are counted as working days


@dataclass(frozen=True)
class CalendarStatus:
    """Whether the national calendar knows the years the SLA clocks are counting in.

    `this_year_known` / `next_year_known` are False when no national calendar is chosen
    (`national == "none"`); the level is then OK, the city having chosen its own lists only.
    """

    national: str  # "cn" or "none"
    years: frozenset[int]  # the years the national calendar knows (empty for "none")
    this_year: int
    this_year_known: bool
    next_year_known: bool
    level: CoverageLevel
    message: str


def city_today(settings: CalendarSettings, now: datetime) -> date:
    """Today's date in the city's time zone (`sla.calendar.timezone`)."""
    return now.astimezone(ZoneInfo(settings.timezone)).date()


def calendar_coverage(settings: CalendarSettings, today: date) -> CalendarStatus:
    """Report whether the national calendar covers `today`'s year (and the next, in December).

    `today` is the date in the city's time zone (`city_today(settings, clock.now())`). The level
    is FAILURE when this year is unknown (WARNING if the settings list days of that year: the
    city carries it by hand), WARNING when next year is unknown and December has begun, else
    OK. Pure: reads the library's data (once per process) and nothing else.
    """
    national = national_calendar(settings)
    year = today.year
    if settings.national == "none":
        return CalendarStatus(
            national.name,
            national.years,
            year,
            this_year_known=False,
            next_year_known=False,
            level=CoverageLevel.OK,
            message="no national calendar (sla.calendar.national = none): working days are "
            "the weekdays and the settings' own holidays and workdays",
        )
    this_known, next_known = year in national.years, year + 1 in national.years
    source = f"{national.package} {national.version}"
    known = f"{min(national.years)}–{max(national.years)}" if national.years else "no year"
    fix = (
        f"upgrade {national.package} (a release follows each notice); until then list the "
        "year's days off and make-up days in sla.calendar.holidays and sla.calendar.workdays"
    )
    listed = {d.year for d in (*settings.holidays, *settings.workdays)}
    if not this_known and year in listed:
        # The city did as the message below says: its own list carries the year meanwhile.
        level = CoverageLevel.WARNING
        message = (
            f"the national calendar ({source}) knows {known}, not {year}: this year's days "
            "off and make-up days are the settings' own (sla.calendar.holidays, workdays); "
            f"upgrade {national.package} when a release has {year}"
        )
    elif not this_known:
        level = CoverageLevel.FAILURE
        message = (
            f"the national calendar ({source}) knows {known}, not {year}: this year's "
            "public holidays and make-up working days are not counted, so working-hours clocks "
            f"run on holidays and stop on make-up days; {fix}"
        )
    elif not next_known and today.month == 12:
        level = CoverageLevel.WARNING
        message = (
            f"the national calendar ({source}) knows {known}, not {year + 1}: from "
            f"1 January working-hours clocks will run on its public holidays; {fix}"
        )
    else:
        level = CoverageLevel.OK
        message = f"the national calendar ({source}) knows {known}"
    return CalendarStatus(
        national.name, national.years, year, this_known, next_known, level, message
    )


def log_calendar_coverage(settings: CalendarSettings, now: datetime) -> CalendarStatus:
    """Log one warning if the national calendar misses this year (or next, in December)."""
    status = calendar_coverage(settings, city_today(settings, now))
    if status.level is not CoverageLevel.OK:
        log.warning("working-hours calendar: %s", status.message)
    return status
