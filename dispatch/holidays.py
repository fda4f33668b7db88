"""Which days are working days: the country's published calendar merged with the city's own.

Mainland China's public holidays and make-up working days (调休) are set each year by the State
Council's notice, usually published in November or December for the year after. The
`chinese-calendar` library carries those notices; it is read once per process into plain sets of
dates (`china()`), so the working-hours arithmetic stays a set lookup.

The city's settings (`sla.calendar.holidays` / `workdays`) are additions that win both ways: a
listed holiday is a day off even if the notice makes it a make-up working day, and a listed
workday is worked even if the notice gives it off.

A year the library does not know yet has no national days: its working days are the weekdays
plus the settings' lists, which is all that can be known.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date

import chinese_calendar
from chinese_calendar import constants

from app.platform.settings import CalendarSettings


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
