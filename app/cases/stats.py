"""The figures a governance centre is judged by, over the cases opened in a time range.

Every figure is defined in docs/STATS.md; in short, for the cases opened in [from, to) in a
group (a unit grid, a street, a department, a category, or all of them):

- received: cases opened (reports merged into an open case count once, with their case);
- dispatched: cases offered to at least one worker;
- closed: cases closed by now; closed_on_time: those whose close clock was never breached;
  on_time_rate (按期结案率) = closed_on_time / closed;
- right_first_time: dispatched cases whose first offer was accepted and never handed back,
  declined, let expire or taken away; right_first_time_rate (准确派遣率) = / dispatched;
- reopened (by an unsatisfied resident), reworked (sent back by an inspector, 返工), and
  rework_rate (返工率) = cases reopened or reworked / cases resolved at least once;
- satisfaction_rate (满意率) = satisfied verdicts / verdicts;
- accept, arrive, close: seconds from the case opening to its first acceptance, its first
  arrival, its closing (wall-clock), each as median and p90 by the nearest-rank method.

A rate with nothing to divide by is null, never 0.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.cases.events import EventType
from app.cases.states import HANDED_BACK, CaseStatus
from app.models import Case, CaseEvent, Feedback, Task
from app.platform.errors import ValidationFailed
from geo import GridIndex, GridLevel, Progress, no_progress

GroupBy = Literal["grid", "street", "department", "category"]
MAX_SPAN = timedelta(days=366)


def check_range(start: datetime, end: datetime) -> None:
    """The figures cover [start, end): a range of at most MAX_SPAN, in that order."""
    if not start < end or end - start > MAX_SPAN:
        raise ValidationFailed("`from` must be before `to`, at most 366 days apart")


def nearest_rank(values: list[float], p: float) -> float | None:
    """The p-th percentile by nearest rank: the smallest value with at least p % of the values
    at or below it (p=50 of [1, 2, 3, 4] is 2). None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Group:
    key: str | None
    received: int = 0
    dispatched: int = 0
    closed: int = 0
    closed_on_time: int = 0
    right_first_time: int = 0
    resolved: int = 0
    reopened: int = 0
    reworked: int = 0
    reopened_or_reworked: int = 0
    feedback: int = 0
    satisfied: int = 0
    accept_s: list[float] = field(default_factory=list)
    arrive_s: list[float] = field(default_factory=list)
    close_s: list[float] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        def rate(part: int, whole: int) -> float | None:
            return round(part / whole, 4) if whole else None

        def seconds(values: list[float], p: float) -> float | None:
            value = nearest_rank(values, p)
            return None if value is None else round(value, 3)

        return {
            "key": self.key,
            "received": self.received,
            "dispatched": self.dispatched,
            "closed": self.closed,
            "closed_on_time": self.closed_on_time,
            "on_time_rate": rate(self.closed_on_time, self.closed),
            "right_first_time": self.right_first_time,
            "right_first_time_rate": rate(self.right_first_time, self.dispatched),
            "resolved": self.resolved,
            "reopened": self.reopened,
            "reworked": self.reworked,
            "rework_rate": rate(self.reopened_or_reworked, self.resolved),
            "feedback": self.feedback,
            "satisfied": self.satisfied,
            "satisfaction_rate": rate(self.satisfied, self.feedback),
            "accept_median_s": seconds(self.accept_s, 50),
            "accept_p90_s": seconds(self.accept_s, 90),
            "arrive_median_s": seconds(self.arrive_s, 50),
            "arrive_p90_s": seconds(self.arrive_s, 90),
            "close_median_s": seconds(self.close_s, 50),
            "close_p90_s": seconds(self.close_s, 90),
        }


FIGURES = tuple(Group(None).figures())  # the column order of the CSV


def _street(index: GridIndex | None, code: str) -> str:
    if index is not None:
        for grid in index.path(code):
            if grid.level is GridLevel.STREET:
                return grid.code
    return code[:9]


async def compute(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    by: GroupBy | None,
    index: GridIndex | None,
    progress: Progress = no_progress,
    where: ColumnElement[bool] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The figures per group (ordered by key) and for all the cases together. `progress` hears
    "computing figures" at each of its five reads and counts. `where`: only the cases it holds
    for (an area, a scope), in every read."""
    step = "computing figures"
    progress(step, 0, 5)
    in_range = (Case.created_at >= start) & (Case.created_at < end)
    if where is not None:
        in_range = in_range & where
    ids = select(Case.id).where(in_range)
    # Plain rows of the columns used, not ORM objects: a month of a district is ~10⁵ rows.
    cases = await session.execute(
        select(
            Case.id,
            Case.category,
            Case.grid_code,
            Case.department,
            Case.status,
            Case.created_at,
            Case.closed_at,
        ).where(in_range)
    )
    progress(step, 1, 5)
    tasks: dict[str, list[Any]] = defaultdict(list)
    for task in await session.execute(
        select(Task.case_id, Task.status, Task.accepted_at, Task.arrived_at)
        .where(Task.case_id.in_(ids))
        .order_by(Task.offered_at, Task.id)
    ):
        tasks[task.case_id].append(task)
    kinds = (
        EventType.CASE_RESOLVED.value,
        EventType.CASE_REOPENED.value,
        EventType.CASE_REWORKED.value,
        EventType.SLA_BREACHED.value,
    )
    progress(step, 2, 5)
    marks: dict[str, set[str]] = defaultdict(set)
    for case_id, kind, data in await session.execute(
        select(CaseEvent.case_id, CaseEvent.type, CaseEvent.data).where(
            CaseEvent.case_id.in_(ids), CaseEvent.type.in_(kinds)
        )
    ):
        if kind == EventType.SLA_BREACHED.value:
            if data.get("clock") == "close":
                marks[case_id].add("late")
        else:
            marks[case_id].add(kind)
    progress(step, 3, 5)
    verdicts: dict[str, list[bool]] = defaultdict(list)
    for case_id, satisfied in await session.execute(
        select(Feedback.case_id, Feedback.satisfied).where(Feedback.case_id.in_(ids))
    ):
        verdicts[case_id].append(bool(satisfied))

    progress(step, 4, 5)
    total = Group(None)
    groups: dict[str | None, Group] = {}
    for case in cases:
        key: str | None = None
        if by == "grid":
            key = case.grid_code
        elif by == "street":
            key = _street(index, case.grid_code)
        elif by == "department":
            key = case.department
        elif by == "category":
            key = case.category
        targets = [total] if by is None else [total, groups.setdefault(key, Group(key))]
        for group in targets:
            _count(group, case, tasks[case.id], marks[case.id], verdicts[case.id])
    ordered = sorted(groups.values(), key=lambda g: (g.key is None, g.key or ""))
    progress(step, 5, 5)
    return [g.figures() for g in ordered], total.figures()


def to_csv(groups: list[dict[str, object]], total: dict[str, object]) -> str:
    """One row a group and a last row for the total, in FIGURES order (docs/STATS.md)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIGURES, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(groups)
    writer.writerow(total | {"key": "(total)"})
    return out.getvalue()


def _count(
    group: Group, case: Any, tasks: list[Any], marks: set[str], verdicts: list[bool]
) -> None:
    opened = case.created_at
    group.received += 1
    if tasks:
        group.dispatched += 1
        first = tasks[0]
        if first.status not in HANDED_BACK and first.accepted_at is not None:
            group.right_first_time += 1
    if case.status == CaseStatus.CLOSED and case.closed_at is not None:
        group.closed += 1
        if "late" not in marks:
            group.closed_on_time += 1
        group.close_s.append((case.closed_at - opened).total_seconds())
    if EventType.CASE_RESOLVED.value in marks:
        group.resolved += 1
    reopened = EventType.CASE_REOPENED.value in marks
    reworked = EventType.CASE_REWORKED.value in marks
    group.reopened += reopened
    group.reworked += reworked
    group.reopened_or_reworked += reopened or reworked
    group.feedback += len(verdicts)
    group.satisfied += sum(verdicts)
    accepted = [t.accepted_at for t in tasks if t.accepted_at is not None]
    if accepted:
        group.accept_s.append((min(accepted) - opened).total_seconds())
    arrived = [t.arrived_at for t in tasks if t.arrived_at is not None]
    if arrived:
        group.arrive_s.append((min(arrived) - opened).total_seconds())
