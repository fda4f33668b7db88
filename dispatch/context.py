"""What the engine's functions need besides a session: time, grids, SLA settings, calendars."""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from app.gridsets.store import LiveGrids
from app.models import SlaPolicy
from app.platform.clock import Clock
from app.platform.settings import SlaSettings
from dispatch.calendar import ALWAYS, Calendar, WorkingHours, parse_period
from dispatch.holidays import working_days


def working_hours(sla: SlaSettings) -> WorkingHours:
    """The settings' working-hours calendar: the national calendar's holidays and make-up days
    (`sla.calendar.national`) with the settings' own on top (`dispatch.holidays`)."""
    c = sla.calendar
    days = working_days(c)
    return WorkingHours(
        ZoneInfo(c.timezone),
        tuple(parse_period(p) for p in c.periods),
        weekdays=frozenset(c.weekdays),
        holidays=days.holidays,
        workdays=days.workdays,
    )


@dataclass(frozen=True)
class DispatchContext:
    clock: Clock
    grids: LiveGrids
    sla: SlaSettings
    _working: WorkingHours = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_working", working_hours(self.sla))

    def place(self, code: str, version: int, lon: float, lat: float) -> tuple[str, int]:
        """A point's grid in the live grid set: `code` if it was placed by the live version,
        else located again (kept as it was if the live set has no grid there)."""
        index = self.grids.index
        if index is not None and index.version != version:
            grid = index.locate(lon, lat)
            if grid is not None:
                return grid.code, index.version
        return code, version

    def warn_at(self, policy: SlaPolicy | None) -> float:
        """The share of a clock's goal at which it warns: the policy's, else the settings'."""
        if policy is not None and policy.warn_at is not None:
            return policy.warn_at
        return self.sla.warn_at

    def calendar(self, name: str) -> Calendar:
        """A policy's calendar by name: "24x7" or "working_hours"."""
        return self._working if name == "working_hours" else ALWAYS
