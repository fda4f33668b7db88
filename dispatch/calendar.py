"""Working time: which hours an SLA clock counts.

Urgent classes (a blocked fire lane) run on `ALWAYS` — every second counts. The rest run on
`WorkingHours`: the day's working periods (e.g. 09:00–12:00 and 13:30–18:00) on working days,
in the city's time zone (Asia/Shanghai by default). A working day is a weekday that is not a
public holiday, or a weekend day declared a make-up working day (调休), as the State Council's
yearly holiday notice sets them; `dispatch/holidays.py` gives those days, merged with the
city's own.

`add(start, seconds)` is the instant at which `seconds` of working time have passed since
`start`; `elapsed(start, end)` the working seconds between two instants. Both are exact to the
microsecond and walk at most a bounded number of days.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

MAX_DAYS = 3 * 366  # no clock is longer than this in working time


class Calendar(Protocol):
    def add(self, start: datetime, seconds: float) -> datetime: ...

    def elapsed(self, start: datetime, end: datetime) -> float: ...


class AlwaysOn:
    """Every second counts (24/7)."""

    name = "24x7"

    def add(self, start: datetime, seconds: float) -> datetime:
        return start + timedelta(seconds=seconds)

    def elapsed(self, start: datetime, end: datetime) -> float:
        return max(0.0, (end - start).total_seconds())


ALWAYS = AlwaysOn()


@dataclass(frozen=True)
class WorkingHours:
    tz: ZoneInfo
    periods: tuple[tuple[time, time], ...]  # within one working day, in order, not overlapping
    weekdays: frozenset[int] = frozenset(range(5))  # Monday = 0
    holidays: frozenset[date] = field(default_factory=frozenset)
    workdays: frozenset[date] = field(default_factory=frozenset)  # make-up days (调休)
    name: str = "working_hours"

    def __post_init__(self) -> None:
        if not self.periods:
            raise ValueError("a working-hours calendar needs at least one period")
        ends = [t for period in self.periods for t in period]
        if ends != sorted(ends) or any(a >= b for a, b in self.periods):
            raise ValueError("working periods must be in order and must not overlap")

    def is_workday(self, day: date) -> bool:
        """Set lookups only (called for every day a clock walks): `workdays` win, then the
        weekday rule less `holidays`."""
        if day in self.workdays:
            return True
        return day.weekday() in self.weekdays and day not in self.holidays

    def _intervals(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Working intervals (UTC) from `start` on, the first clipped to begin at `start`."""
        start = start.astimezone(UTC)
        day = start.astimezone(self.tz).date()
        for _ in range(MAX_DAYS):
            if self.is_workday(day):
                for a, b in self.periods:
                    begin = datetime.combine(day, a, self.tz).astimezone(UTC)
                    end = datetime.combine(day, b, self.tz).astimezone(UTC)
                    if end <= start:
                        continue
                    yield max(begin, start), end
            day += timedelta(days=1)

    def add(self, start: datetime, seconds: float) -> datetime:
        left = timedelta(seconds=seconds)
        if left <= timedelta(0):
            return start
        for begin, end in self._intervals(start):
            if end - begin >= left:
                return begin + left
            left -= end - begin
        raise ValueError(f"{seconds} s of working time do not fit in {MAX_DAYS} days")

    def elapsed(self, start: datetime, end: datetime) -> float:
        total = timedelta(0)
        end = end.astimezone(UTC)
        for begin, stop in self._intervals(start):
            if begin >= end:
                break
            total += min(stop, end) - begin
        return total.total_seconds()


def parse_period(text: str) -> tuple[time, time]:
    """'09:00-12:00' → (09:00, 12:00)."""
    a, _, b = text.partition("-")
    return time.fromisoformat(a.strip()), time.fromisoformat(b.strip())
