"""locate / locate_many: the boundary rule, holes, MultiPolygons, snapping, vectorised agreement."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import shapely

from geo import GridIndex
from geo.demo_city import EAST, NORTH, SOUTH, WEST, demo_grids
from geo.distance import haversine_m
from geo.synthetic import Bounds, synthetic_city
from geo.validate import grids_from_geojson
from tests.geo.cityblock import at, code, collection


@pytest.fixture(scope="module")
def block() -> GridIndex:
    return GridIndex(grids_from_geojson(collection()), version=1)


def owner(index: GridIndex, x: float, y: float) -> str | None:
    grid = index.locate(*at(x, y))
    return grid.code[-2:] if grid else None


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        (0.5, 0.5, "01"),
        (1.5, 0.5, "02"),
        (1.5, 1.5, "03"),
        (0.5, 1.5, "04"),  # inside C's hole: D
        (2.5, 0.5, "05"),
        (3.5, 1.5, "05"),  # E's second polygon
        (2.5, 1.5, "06"),
        (3.5, 0.5, "07"),
    ],
)
def test_interior_points(block: GridIndex, x: float, y: float, expected: str) -> None:
    assert owner(block, x, y) == expected


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        (1, 0.5, "01"),  # edge A|B
        (1, 1, "01"),  # vertex of A, B and C
        (0.5, 1, "01"),  # edge A|C
        (1.5, 1, "02"),  # edge B|C
        (0.4, 1.5, "03"),  # the rim of C's hole is also D's edge: C has the smaller code
        (0.4, 1.4, "03"),  # a corner of the hole
        (3, 1, "05"),  # E's two squares touch here, with F and G
        (2, 1, "02"),  # B, C, E, F meet
        (4, 2, "05"),  # the outer corner
        (0, 0, "01"),
    ],
)
def test_shared_edges_and_vertices_have_one_owner_the_smallest_code(
    block: GridIndex, x: float, y: float, expected: str
) -> None:
    covering = sorted(
        g.code[-2:] for g in block.units if g.geometry.intersects(shapely.Point(*at(x, y)))
    )
    assert len(covering) >= 1
    assert owner(block, x, y) == covering[0] == expected


def test_outside_without_snap_is_none(block: GridIndex) -> None:
    assert owner(block, -0.01, 0.5) is None
    assert owner(block, 5, 5) is None
    assert block.locate(116.4, 39.9) is None
    assert block.locate(math.nan, 30.2) is None
    assert block.locate(120.105, math.inf) is None


def test_snap_gives_a_point_just_outside_to_the_nearest_grid() -> None:
    index = GridIndex(grids_from_geojson(collection()), version=1, snap_m=50)
    lon, lat = at(-0.02, 0.5)  # 0.0002° west of A: about 19 m
    near = index.locate(lon, lat)
    assert near is not None and near.code == code("01")
    assert owner(index, 1.5, -0.03) == "02"  # ~33 m south of B
    assert owner(index, 1.0, -0.03) == "01"  # equally near A and B: the smaller code
    assert owner(index, -0.06, 0.5) is None  # ~58 m: beyond the snap distance
    assert owner(index, 4.04, 1.5) == "05"  # east of E's second square
    # The chosen grid really is within the snap distance.
    edge_lon, _ = at(0, 0.5)
    assert haversine_m(lon, lat, edge_lon, lat) < 50


def test_snap_never_overrides_a_covering_grid() -> None:
    index = GridIndex(grids_from_geojson(collection()), version=1, snap_m=5000)
    assert owner(index, 0.5, 1.5) == "04"
    assert owner(index, 0.41, 1.5) == "04"


def test_neighbours_of_multipolygons_and_holes(block: GridIndex) -> None:
    tail = lambda c: sorted(x[-2:] for x in block.neighbours(code(c)))  # noqa: E731
    assert tail("01") == ["02", "03"]
    assert tail("03") == ["01", "02", "04", "05", "06"] and tail("04") == ["03"]
    assert tail("05") == ["02", "03", "06", "07"]
    assert tail("07") == ["05", "06"]


def boundary_points(index: GridIndex, grids: int) -> list[tuple[float, float]]:
    points: list[tuple[float, float]] = []
    for grid in index.units[:grids]:
        coords = shapely.get_coordinates(grid.geometry.boundary).tolist()
        points += [(x, y) for x, y in coords]
        points += [((a[0] + b[0]) / 2, (a[1] + b[1]) / 2) for a, b in itertools.pairwise(coords)]
    return points


@pytest.mark.parametrize("snap_m", [0.0, 25.0])
def test_locate_many_agrees_with_locate(snap_m: float) -> None:
    index = GridIndex(
        synthetic_city(30, 20, bounds=Bounds(121.30, 31.10, 121.36, 31.14)), 1, snap_m=snap_m
    )
    rng = random.Random(3)
    points = [(rng.uniform(121.295, 121.365), rng.uniform(31.095, 31.145)) for _ in range(4000)]
    points += boundary_points(index, 60)
    points += [(math.nan, 31.1), (121.3, math.nan), (0.0, 0.0)]
    many = index.locate_many([p[0] for p in points], [p[1] for p in points])
    assert len(many) == len(points)
    for (x, y), got in zip(points, many, strict=True):
        assert got is index.locate(x, y), (x, y)


def test_every_point_of_the_service_area_has_exactly_one_owner() -> None:
    """Random, vertex and edge points of an irregular set: the owner covers the point and no
    covering grid has a smaller code (brute force over every grid)."""
    grids = synthetic_city(24, 16, bounds=Bounds(121.30, 31.10, 121.348, 31.132))
    index = GridIndex(grids, 1)
    rng = random.Random(4)
    points = [(rng.uniform(121.30, 121.348), rng.uniform(31.10, 31.132)) for _ in range(1500)]
    points += boundary_points(index, 40)
    geoms = np.array([g.geometry for g in index.units])
    for x, y in points:
        covering = np.flatnonzero(shapely.intersects_xy(geoms, x, y))
        got = index.locate(x, y)
        if len(covering) == 0:
            assert got is None
        else:
            assert got is not None and got.code == index.units[int(covering.min())].code


def test_the_demo_city_agrees_with_brute_force() -> None:
    index = GridIndex(demo_grids(), 1)
    rng = np.random.default_rng(5)
    xs, ys = rng.uniform(WEST, EAST, 3000), rng.uniform(SOUTH, NORTH, 3000)
    geoms = np.array([g.geometry for g in index.units])
    for grid, x, y in zip(index.locate_many(xs, ys), xs, ys, strict=True):
        first = int(np.flatnonzero(shapely.intersects_xy(geoms, x, y)).min())
        assert grid is index.units[first]


def test_locate_many_rejects_mismatched_lengths(block: GridIndex) -> None:
    with pytest.raises(ValueError, match="differ"):
        block.locate_many([1.0, 2.0], [1.0])
    assert block.locate_many([], []) == []


def test_an_empty_index_locates_nothing() -> None:
    empty = GridIndex([], version=0, snap_m=100)
    assert empty.locate(120.1, 30.2) is None
    assert empty.locate_many([120.1], [30.2]) == [None]
