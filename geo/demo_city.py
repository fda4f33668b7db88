"""The bundled demo city: a synthetic district inside Hangzhou's lon 120.14–120.22, lat 30.23–30.30.

Unit grids are quadrilaterals over a jittered lattice: neighbouring cells share their corner
points exactly, so the cells tile the rectangle with no gap and no overlap. Streets are 2 × 2
blocks of the lattice and communities 2 × 2 blocks inside each street. Codes follow CJ/T 213:
county 6 + street 3 + community 3 + grid 2 = 14 digits. The output is deterministic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from shapely.geometry import Polygon
from shapely.ops import unary_union

from geo.grids import Grid, GridLevel

COUNTY_CODE = "330106"
WEST, EAST, SOUTH, NORTH = 120.14, 120.22, 30.23, 30.30
COLS, ROWS = 20, 16  # 320 unit grids
STREETS_X, STREETS_Y = 2, 2
COMMUNITIES_X, COMMUNITIES_Y = 2, 2

_STREET_NAMES = ["湖畔街道", "桂花街道", "梧桐街道", "运河街道"]
_STREET_NAMES_EN = ["Lakeside", "Osmanthus", "Parasol", "Canal"]
_COMMUNITY_SUFFIX = ["东社区", "西社区", "南社区", "北社区"]


@dataclass(frozen=True)
class DemoWorker:
    id: str
    name: str
    grid_code: str
    lon: float
    lat: float
    department: str | None = None  # None: a grid worker
    skills: tuple[str, ...] = ()


@dataclass(frozen=True)
class DemoSensor:
    id: str
    name: str
    category: str
    lon: float
    lat: float


def _lattice(seed: int) -> list[list[tuple[float, float]]]:
    rng = random.Random(seed)
    dx, dy = (EAST - WEST) / COLS, (NORTH - SOUTH) / ROWS
    points: list[list[tuple[float, float]]] = []
    for j in range(ROWS + 1):
        row = []
        for i in range(COLS + 1):
            x, y = WEST + i * dx, SOUTH + j * dy
            # Jitter interior coordinates only, so the outer edge stays the straight rectangle.
            if 0 < i < COLS:
                x += rng.uniform(-0.25, 0.25) * dx
            if 0 < j < ROWS:
                y += rng.uniform(-0.25, 0.25) * dy
            row.append((round(x, 7), round(y, 7)))
        points.append(row)
    return points


def demo_grids(seed: int = 20061) -> list[Grid]:
    lattice = _lattice(seed)
    sx, sy = COLS // STREETS_X, ROWS // STREETS_Y  # cells per street
    cx, cy = sx // COMMUNITIES_X, sy // COMMUNITIES_Y  # cells per community
    units: dict[tuple[int, int], list[Grid]] = {}
    communities: dict[tuple[int, int], list[Grid]] = {}
    counters: dict[tuple[int, int, int, int], int] = {}
    for j in range(ROWS):
        for i in range(COLS):
            street_idx = (j // sy) * STREETS_X + (i // sx)
            community_idx = ((j % sy) // cy) * COMMUNITIES_X + ((i % sx) // cx)
            key = (street_idx, community_idx, 0, 0)
            counters[key] = counters.get(key, 0) + 1
            street_code = f"{COUNTY_CODE}{street_idx + 1:03d}"
            community_code = f"{street_code}{community_idx + 1:03d}"
            code = f"{community_code}{counters[key]:02d}"
            ring = [lattice[j][i], lattice[j][i + 1], lattice[j + 1][i + 1], lattice[j + 1][i]]
            name = (
                f"{_STREET_NAMES[street_idx]}{_COMMUNITY_SUFFIX[community_idx]}"
                f"第{counters[key]}网格"
            )
            grid = Grid(
                code,
                GridLevel.UNIT,
                name,
                community_code,
                Polygon(ring),
                responsible=f"{name}网格长",  # the grid leader, notified on escalation
            )
            communities.setdefault((street_idx, community_idx), []).append(grid)
    out: list[Grid] = []
    streets: dict[int, list[Grid]] = {}
    for (street_idx, community_idx), cells in sorted(communities.items()):
        street_code = f"{COUNTY_CODE}{street_idx + 1:03d}"
        community_code = f"{street_code}{community_idx + 1:03d}"
        community = Grid(
            community_code,
            GridLevel.COMMUNITY,
            f"{_STREET_NAMES[street_idx][:2]}{_COMMUNITY_SUFFIX[community_idx]}",
            street_code,
            unary_union([c.geometry for c in cells]),
            responsible=f"{_STREET_NAMES[street_idx][:2]}{_COMMUNITY_SUFFIX[community_idx]}居委会",
        )
        streets.setdefault(street_idx, []).append(community)
        units[(street_idx, community_idx)] = cells
        out.extend(cells)
        out.append(community)
    for street_idx, comms in sorted(streets.items()):
        out.append(
            Grid(
                f"{COUNTY_CODE}{street_idx + 1:03d}",
                GridLevel.STREET,
                f"{_STREET_NAMES[street_idx]} ({_STREET_NAMES_EN[street_idx]} Street)",
                None,
                unary_union([c.geometry for c in comms]),
                responsible=f"{_STREET_NAMES[street_idx]}办事处",
            )
        )
    return sorted(out, key=lambda g: g.code)


_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛"]


def demo_workers(grids: list[Grid], seed: int = 7) -> list[DemoWorker]:
    """One on-duty worker per unit grid, and a second one in every fourth grid who is also an
    inspector (skill `inspect`, 核查员); two road-maintenance crews (department `roads`) per
    street, based in its first and last unit grids."""
    rng = random.Random(seed)
    workers: list[DemoWorker] = []
    units = [g for g in grids if g.level is GridLevel.UNIT]
    for n, grid in enumerate(units):
        centre = grid.geometry.representative_point()
        for k in range(2 if n % 4 == 0 else 1):
            name = rng.choice(_SURNAMES) + rng.choice(_GIVEN) + rng.choice(_GIVEN)
            skills = ("inspect",) if k == 1 else ()
            workers.append(
                DemoWorker(
                    f"w-{grid.code}-{k + 1}", name, grid.code, centre.x, centre.y, skills=skills
                )
            )
    for street in (g for g in grids if g.level is GridLevel.STREET):
        mine = [g for g in units if g.code.startswith(street.code)]
        for k, base in enumerate((mine[0], mine[-1])):
            centre = base.geometry.representative_point()
            name = rng.choice(_SURNAMES) + rng.choice(_GIVEN) + rng.choice(_GIVEN)
            workers.append(
                DemoWorker(
                    f"r-{street.code}-{k + 1}",
                    f"{name}（道路养护）",
                    base.code,
                    centre.x,
                    centre.y,
                    department="roads",
                )
            )
    return workers


def demo_sensors() -> list[DemoSensor]:
    """AI cameras and sensors at fixed points inside the demo city."""
    return [
        DemoSensor("cam-001", "湖畔路消防通道摄像头", "fire_lane_blocked", 120.1532, 30.2431),
        DemoSensor("cam-002", "桂花小区消防通道摄像头", "fire_lane_blocked", 120.2071, 30.2488),
        DemoSensor("cam-003", "梧桐菜场占道经营摄像头", "street_vending", 120.1617, 30.2844),
        DemoSensor("cam-004", "运河东路违停摄像头", "illegal_parking", 120.2113, 30.2902),
        DemoSensor("bin-005", "梧桐公园垃圾桶满溢传感器", "garbage_overflow", 120.1702, 30.2725),
        DemoSensor("bin-006", "运河广场垃圾桶满溢传感器", "garbage_overflow", 120.1989, 30.2769),
    ]
