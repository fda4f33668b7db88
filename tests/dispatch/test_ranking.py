"""The engine's decisions without a server or a database: where a case looks for its worker,
how candidates rank, how a batch's earlier offers count against a worker, and which timers a
policy arms."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from app.cases.states import CaseStatus, TimerKind
from app.gridsets.store import LiveGrids
from app.models import Case, SlaPolicy, Worker
from app.platform.clock import ManualClock
from app.platform.settings import SlaSettings
from dispatch import ranking, timers
from dispatch.context import DispatchContext
from geo import GridIndex
from geo.demo_city import demo_grids

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # 16:00 in Shanghai, a Monday


@pytest.fixture(scope="module")
def index() -> GridIndex:
    return GridIndex(demo_grids(), 1)


def context(index: GridIndex) -> DispatchContext:
    return DispatchContext(
        clock=ManualClock(NOW), grids=LiveGrids(index), sla=SlaSettings(warn_at=0.8)
    )


def a_case(index: GridIndex, code: str, department: str | None = None) -> Case:
    grid = index.get(code)
    assert grid is not None
    p = grid.geometry.representative_point()
    return Case(
        id="c-1",
        category="garbage_overflow",
        grid_code=code,
        grid_set_version=index.version,
        status=CaseStatus.REPORTED,
        priority=3,
        department=department,
        lon=p.x,
        lat=p.y,
    )


def worker(
    wid: str,
    grid: str,
    *,
    department: str | None = None,
    load: int = 0,
    capacity: int = 3,
    at: tuple[float, float] | None = None,
    seen: datetime | None = NOW,
    skills: tuple[str, ...] = (),
    on_duty: bool = True,
) -> Worker:
    return Worker(
        id=wid,
        name=wid,
        grid_code=grid,
        department=department,
        open_tasks=load,
        capacity=capacity,
        on_duty=on_duty,
        lon=at[0] if at else None,
        lat=at[1] if at else None,
        location_at=seen if at else None,
        skills=list(skills),
    )


def first_unit(index: GridIndex, with_neighbours: int = 2) -> str:
    return next(g.code for g in index.units if len(index.neighbours(g.code)) >= with_neighbours)


def test_a_grid_case_looks_in_its_grid_then_the_touching_ones_then_its_street(
    index: GridIndex,
) -> None:
    home = first_unit(index)
    search = ranking.search_for(context(index), a_case(index, home), skill=None)
    own, near, street = search.tiers
    assert own.grids == {home} and own.street is None
    assert near.grids == set(index.neighbours(home))
    assert street.street == home[:9] and home in street.grids
    assert search.nearness[home] == 0


def test_a_department_case_looks_only_in_the_departments_queue(index: GridIndex) -> None:
    search = ranking.search_for(context(index), a_case(index, first_unit(index), "roads"), None)
    assert search.tiers == (ranking.Tier(department="roads"),)


def test_the_roster_finds_exactly_the_workers_a_tier_holds(index: GridIndex) -> None:
    rng = random.Random(5)
    codes = [g.code for g in index.units][:60]
    workers = [
        worker(
            f"w{i}",
            rng.choice(codes),
            department=rng.choice([None, None, None, "roads", "parks"]),
        )
        for i in range(300)
    ]
    roster = ranking.Roster(workers)
    ctx = context(index)
    for code in codes[:20]:
        for department in (None, "roads"):
            for tier in ranking.search_for(ctx, a_case(index, code, department), None).tiers:
                expected = {w.id for w in workers if tier.holds(w)}
                assert {w.id for w in roster.members(tier)} == expected


def test_skill_first_then_distance_then_load_then_id(index: GridIndex) -> None:
    home = first_unit(index)
    case = a_case(index, home)
    search = ranking.Search((ranking.Tier(grids=frozenset([home])),), "clean", {home: 0})
    near = (case.lon + 0.0001, case.lat)  # about 10 m
    far = (case.lon + 0.01, case.lat)  # about 1 km
    pool = [
        worker("a-far-skilled", home, at=far, skills=("clean",)),
        worker("b-near", home, at=near),
        worker("c-near-busy", home, at=near, load=2),
        worker("d-near-idle", home, at=near),
        worker("e-stale", home, at=near, seen=NOW - timedelta(hours=1)),
        worker("f-full", home, at=near, load=3),
        worker("g-off", home, at=near, on_duty=False),
    ]
    fresh = ranking.fresh_after(context(index), NOW)
    chosen = ranking.pick(search, case, ranking.Roster(pool), exclude={"b-near"}, fresh_since=fresh)
    assert [w.id for w in chosen] == ["a-far-skilled", "d-near-idle", "c-near-busy", "e-stale"]


def test_slots_taken_earlier_in_a_batch_count(index: GridIndex) -> None:
    home = first_unit(index)
    case = a_case(index, home)
    search = ranking.search_for(context(index), case, None)
    roster = ranking.Roster([worker("only", home, capacity=2, load=1)])
    fresh = ranking.fresh_after(context(index), NOW)
    assert ranking.pick(search, case, roster, exclude=set(), fresh_since=fresh)
    taken = {"only": 1}
    assert not ranking.pick(search, case, roster, exclude=set(), fresh_since=fresh, taken=taken)


def test_an_empty_tier_hands_over_to_the_next(index: GridIndex) -> None:
    home = first_unit(index)
    neighbour = index.neighbours(home)[0]
    case = a_case(index, home)
    search = ranking.search_for(context(index), case, None)
    roster = ranking.Roster(
        [
            worker("home-full", home, load=3),
            worker("next-door", neighbour),
            worker("dept", home, department="roads"),
        ]
    )
    fresh = ranking.fresh_after(context(index), NOW)
    chosen = ranking.pick(search, case, roster, exclude=set(), fresh_since=fresh)
    assert [w.id for w in chosen] == ["next-door"]


def test_rework_may_go_to_a_worker_outside_the_tiers_of_the_same_kind(index: GridIndex) -> None:
    case = a_case(index, first_unit(index))
    assert ranking.may_take(case, worker("any", "x"), 0)
    assert not ranking.may_take(case, worker("crew", "x", department="roads"), 0)
    assert not ranking.may_take(case, worker("busy", "x", capacity=1), 1)


def test_clocks_arm_with_their_warnings_and_escalation_steps(index: GridIndex) -> None:
    policy = SlaPolicy(
        category_code="fire_lane_blocked",
        priority=0,
        accept_s=60,
        on_site_s=300,
        close_s=900,
        calendar="24x7",
        verify_s=None,
        warn_at=None,
        max_refusals=3,
        escalation=[
            {"clock": "on_site", "after_s": 0, "action": "notify_grid_leader"},
            {"clock": "on_site", "after_s": 120, "action": "reoffer"},
            {"clock": "close", "after_s": 0, "action": "notify_street_office"},
        ],
    )
    rows, due = timers.clock_timers(context(index), policy, case_id="c-1", start=NOW)
    assert due == {
        TimerKind.ON_SITE: NOW + timedelta(seconds=300),
        TimerKind.CLOSE: NOW + timedelta(seconds=900),
    }
    armed = [(t["kind"], t["due_at"] - NOW, t["step"], t["action"], t["goal_s"]) for t in rows]
    s = timedelta(seconds=1)
    assert armed == [
        (TimerKind.ON_SITE, 300 * s, None, None, 300),
        (TimerKind.ON_SITE_WARNING, 240 * s, None, None, None),
        (TimerKind.ON_SITE_ESCALATION, 300 * s, 0, "notify_grid_leader", None),
        (TimerKind.ON_SITE_ESCALATION, 420 * s, 1, "reoffer", None),
        (TimerKind.CLOSE, 900 * s, None, None, 900),
        (TimerKind.CLOSE_WARNING, 720 * s, None, None, None),
        (TimerKind.CLOSE_ESCALATION, 900 * s, 2, "notify_street_office", None),
    ]
