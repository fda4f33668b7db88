"""Who is offered a case: the rules, as pure functions of the case, the live grid set and the
workers as loaded. The one-case path (dispatch/assignment.py) and the batched path
(dispatch/batch.py) both decide with these; nothing here reads the database.

A case of a category owned by a department goes to that department's queue: its workers,
wherever they are. Any other case goes to grid workers (no department), tier by tier: the
case's grid, the grids that touch it, then the rest of its street, in the live grid set (a case
opened under an older grid set is placed again by its location in the live one). Within a tier,
workers with the category's skill first, then the nearest by a fresh reported location (in
100 m steps; stale or unknown locations rank after every fresh one), then open tasks against
capacity, then the grid's nearness, then id: the choice is deterministic. Only on-duty workers
with a free slot are candidates, and workers who already refused the case are left out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement

from app.models import Case, Worker
from dispatch.context import DispatchContext
from geo import haversine_m

DISTANCE_STEP_M = 100.0  # distances within the same 100 m rank as equal
STREET_DIGITS = 9  # a unit grid's street is the first 9 digits of its code (CJ/T 213)


@dataclass(frozen=True)
class Tier:
    """One circle of candidates: a department's workers, or the grid workers of some grids, or
    those of a street outside the grids already asked."""

    department: str | None = None
    grids: frozenset[str] = frozenset()
    street: str | None = None  # with `grids`: the street's workers but those grids'

    def holds(self, worker: Worker) -> bool:
        if self.department is not None:
            return worker.department == self.department
        if worker.department is not None:
            return False
        if self.street is not None:
            return worker.grid_code.startswith(self.street) and worker.grid_code not in self.grids
        return worker.grid_code in self.grids

    def where(self) -> ColumnElement[bool]:
        """`holds` as SQL."""
        if self.department is not None:
            return Worker.department == self.department
        grid_worker = Worker.department.is_(None)
        if self.street is not None:
            return (
                grid_worker
                & Worker.grid_code.startswith(self.street)
                & Worker.grid_code.not_in(sorted(self.grids))
            )
        return grid_worker & Worker.grid_code.in_(sorted(self.grids))


@dataclass(frozen=True)
class Search:
    """Where to look for a case's worker, in order, and how to rank those found."""

    tiers: tuple[Tier, ...]
    skill: str | None = None  # the category's: workers with it rank first
    nearness: Mapping[str, int] = field(default_factory=dict)  # grid → 0 (own), 1, ... (touching)


def search_for(ctx: DispatchContext, case: Case, skill: str | None) -> Search:
    if case.department is not None:
        return Search((Tier(department=case.department),), skill)
    home, _ = ctx.place(case.grid_code, case.grid_set_version, case.lon, case.lat)
    index = ctx.grids.index
    near = list(index.neighbours(home)) if index is not None else []
    tiers = [Tier(grids=frozenset([home]))]
    if near:
        tiers.append(Tier(grids=frozenset(near)))
    if len(home) >= STREET_DIGITS:
        tiers.append(Tier(grids=frozenset([home, *near]), street=home[:STREET_DIGITS]))
    return Search(tuple(tiers), skill, {code: i for i, code in enumerate([home, *near])})


def fresh_after(ctx: DispatchContext, now: datetime) -> datetime:
    """Locations received before this are too old to rank by distance."""
    return now - timedelta(seconds=ctx.sla.location_fresh_s)


def rank(
    search: Search, case: Case, worker: Worker, load: int, fresh_since: datetime
) -> tuple[int, float, float, int, str]:
    """A worker's place in the order (lower is better); `load` is their open tasks."""
    steps = math.inf
    if (
        worker.location_at is not None
        and worker.location_at >= fresh_since
        and worker.lon is not None
        and worker.lat is not None
    ):
        metres = haversine_m(case.lon, case.lat, worker.lon, worker.lat)
        steps = float(int(metres // DISTANCE_STEP_M))
    skill = search.skill
    return (
        0 if skill is None or skill in (worker.skills or ()) else 1,
        steps,
        load / max(worker.capacity, 1),
        search.nearness.get(worker.grid_code, len(search.nearness)),
        worker.id,
    )


def has_room(worker: Worker, load: int) -> bool:
    return worker.on_duty and load < worker.capacity


class Roster:
    """Loaded workers, indexed the way tiers ask for them: `members(tier)` is exactly the
    workers `tier.holds`, found without looking at the others (a batch loads many streets)."""

    def __init__(self, workers: Iterable[Worker]) -> None:
        self._by_department: dict[str, list[Worker]] = defaultdict(list)
        self._by_grid: dict[str, list[Worker]] = defaultdict(list)
        self._by_street: dict[str, list[Worker]] = defaultdict(list)
        for w in workers:
            if w.department is not None:
                self._by_department[w.department].append(w)
            else:
                self._by_grid[w.grid_code].append(w)
                self._by_street[w.grid_code[:STREET_DIGITS]].append(w)

    def members(self, tier: Tier) -> Iterable[Worker]:
        if tier.department is not None:
            return self._by_department.get(tier.department, [])
        if tier.street is not None:
            street = self._by_street.get(tier.street, [])
            return [w for w in street if tier.holds(w)]
        return [w for code in sorted(tier.grids) for w in self._by_grid.get(code, [])]


def pick(
    search: Search,
    case: Case,
    roster: Roster,
    *,
    exclude: set[str],
    fresh_since: datetime,
    taken: Mapping[str, int] | None = None,
) -> list[Worker]:
    """The candidates of the first tier that has any, best first. `taken`: slots already
    taken from a worker beyond their loaded `open_tasks` (earlier cases of a batch)."""
    taken = taken or {}
    for tier in search.tiers:
        found = []
        for worker in roster.members(tier):
            load = worker.open_tasks + taken.get(worker.id, 0)
            if worker.id not in exclude and has_room(worker, load):
                found.append((rank(search, case, worker, load, fresh_since), worker))
        if found:
            return [w for _, w in sorted(found, key=lambda pair: pair[0])]
    return []


def may_take(case: Case, worker: Worker, load: int) -> bool:
    """Whether `worker` may be offered `case` outside the tiers (rework goes back to whoever did
    the work): on duty, with room, and of the case's kind (its department, or a grid worker)."""
    return has_room(worker, load) and worker.department == case.department
