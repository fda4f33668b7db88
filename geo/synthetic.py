"""Synthetic city-scale grid sets for benchmarks and tests.

`synthetic_city(cols, rows)` tiles a rectangle with `cols × rows` irregular unit grids: the corners
form a jittered lattice and every edge between two corners is a wavy polyline with its own random
number of intermediate vertices (each unit grid ends up with roughly 10–60 vertices). Neighbours
share their edges vertex for vertex, so the unit grids cover the rectangle with no gap and no
overlap. Above them sit communities (blocks of units), streets (blocks of communities) and one
district, all with CJ/T 213 codes. The output depends only on the arguments.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import shapely
from shapely.geometry import Polygon

from geo.grids import Grid, GridLevel

Point2 = tuple[float, float]


@dataclass(frozen=True)
class Bounds:
    west: float
    south: float
    east: float
    north: float


SHANGHAI = Bounds(121.20, 30.95, 121.80, 31.45)


def _wavy_edge(
    rng: random.Random, a: Point2, b: Point2, interior: tuple[int, int], amplitude: float
) -> list[Point2]:
    """Intermediate vertices strictly between a and b (neither end included)."""
    n = rng.randint(*interior)
    (ax, ay), (bx, by) = a, b
    length = math.hypot(bx - ax, by - ay)
    nx, ny = -(by - ay) / length, (bx - ax) / length  # unit normal
    ts = sorted(rng.uniform(0.05, 0.95) for _ in range(n))
    out = []
    for t in ts:
        # The offset tapers to nothing at both ends so edges meeting at a corner never cross.
        off = rng.uniform(-1.0, 1.0) * amplitude * length * math.sin(math.pi * t)
        out.append((ax + (bx - ax) * t + nx * off, ay + (by - ay) * t + ny * off))
    return out


def synthetic_city(
    cols: int,
    rows: int,
    *,
    bounds: Bounds = SHANGHAI,
    county: str = "310115",
    block: tuple[int, int] = (5, 5),
    street_blocks: tuple[int, int] = (5, 4),
    edge_vertices: tuple[int, int] = (2, 14),
    seed: int = 1,
) -> list[Grid]:
    """A district of `cols × rows` unit grids with communities and streets above them.

    A community is a `block` of unit grids, a street a `street_blocks` block of communities.
    """
    rng = random.Random(seed)
    dx, dy = (bounds.east - bounds.west) / cols, (bounds.north - bounds.south) / rows
    corners = [
        [
            (
                bounds.west + i * dx + (rng.uniform(-0.2, 0.2) * dx if 0 < i < cols else 0.0),
                bounds.south + j * dy + (rng.uniform(-0.2, 0.2) * dy if 0 < j < rows else 0.0),
            )
            for i in range(cols + 1)
        ]
        for j in range(rows + 1)
    ]

    def edge(a: Point2, b: Point2, outer: bool) -> list[Point2]:
        return [] if outer else _wavy_edge(rng, a, b, edge_vertices, 0.08)

    # horizontal[j][i]: corner (i, j) → (i+1, j); vertical[j][i]: corner (i, j) → (i, j+1).
    horizontal = [
        [edge(corners[j][i], corners[j][i + 1], j in (0, rows)) for i in range(cols)]
        for j in range(rows + 1)
    ]
    vertical = [
        [edge(corners[j][i], corners[j + 1][i], i in (0, cols)) for i in range(cols + 1)]
        for j in range(rows)
    ]
    bx, by = block
    sx, sy = street_blocks
    communities_x = math.ceil(cols / bx)
    streets_x = math.ceil(communities_x / sx)
    units: list[Grid] = []
    members: dict[str, list[Polygon]] = {}
    numbers: dict[str, int] = {}
    for j in range(rows):
        for i in range(cols):
            ring = [
                corners[j][i],
                *horizontal[j][i],
                corners[j][i + 1],
                *vertical[j][i + 1],
                corners[j + 1][i + 1],
                *reversed(horizontal[j + 1][i]),
                corners[j + 1][i],
                *reversed(vertical[j][i]),
            ]
            ci, cj = i // bx, j // by
            street = f"{county}{(cj // sy) * streets_x + ci // sx + 1:03d}"
            community = f"{street}{(cj % sy) * sx + ci % sx + 1:03d}"
            numbers[community] = numbers.get(community, 0) + 1
            code = f"{community}{numbers[community]:02d}"
            polygon = Polygon(ring)
            units.append(Grid(code, GridLevel.UNIT, f"网格 {code}", community, polygon))
            members.setdefault(community, []).append(polygon)
    communities = [
        Grid(code, GridLevel.COMMUNITY, f"社区 {code}", code[:9], shapely.coverage_union_all(ps))
        for code, ps in sorted(members.items())
    ]
    by_street: dict[str, list[Polygon]] = {}
    for c in communities:
        by_street.setdefault(c.code[:9], []).append(c.geometry)
    streets = [
        Grid(code, GridLevel.STREET, f"街道 {code}", county, shapely.coverage_union_all(ps))
        for code, ps in sorted(by_street.items())
    ]
    district = Grid(
        county,
        GridLevel.DISTRICT,
        f"区 {county}",
        None,
        shapely.coverage_union_all([s.geometry for s in streets]),
    )
    return [district, *streets, *communities, *units]
