import random

import pytest
import shapely
from shapely.geometry import box
from shapely.ops import unary_union

from geo import GridIndex, GridLevel
from geo.demo_city import (
    COUNTY_CODE,
    EAST,
    NORTH,
    SOUTH,
    WEST,
    demo_grids,
    demo_sensors,
    demo_workers,
)
from geo.validate import grids_from_geojson


@pytest.fixture(scope="module")
def index() -> GridIndex:
    return GridIndex(demo_grids(), version=1)


def test_demo_city_has_enough_unit_grids_with_cjt213_codes(index: GridIndex) -> None:
    assert len(index.units) >= 300
    for grid in index.units:
        assert len(grid.code) == 14 and grid.code.isdigit()
        assert grid.code.startswith(COUNTY_CODE)
        community = index.get(grid.parent_code or "")
        assert community is not None and community.level is GridLevel.COMMUNITY
        assert grid.code[:12] == community.code
        street = index.get(community.parent_code or "")
        assert street is not None and street.level is GridLevel.STREET
        assert community.code[:9] == street.code
        assert [g.code for g in index.path(grid.code)] == [street.code, community.code, grid.code]


def test_unit_grids_tile_the_district_without_gaps_or_overlaps(index: GridIndex) -> None:
    area = box(WEST, SOUTH, EAST, NORTH).area
    units = [g.geometry for g in index.units]
    assert all(g.is_valid for g in units)
    union = unary_union(units)
    assert union.area == pytest.approx(area, rel=1e-9)  # no gaps
    assert sum(g.area for g in units) == pytest.approx(area, rel=1e-9)  # no overlaps
    assert union.symmetric_difference(box(WEST, SOUTH, EAST, NORTH)).area < 1e-12


def test_every_random_point_has_exactly_one_owner(index: GridIndex) -> None:
    rng = random.Random(1)
    for _ in range(2000):
        lon, lat = rng.uniform(WEST, EAST), rng.uniform(SOUTH, NORTH)
        owner = index.locate(lon, lat)
        assert owner is not None
        covering = [g for g in index.units if g.geometry.covers(shapely.Point(lon, lat))]
        assert owner.code == min(g.code for g in covering)


def test_shared_vertex_goes_to_the_smallest_code(index: GridIndex) -> None:
    first = index.units[0]
    for x, y in list(first.geometry.exterior.coords)[:-1]:
        covering = sorted(g.code for g in index.units if g.geometry.covers(shapely.Point(x, y)))
        owner = index.locate(x, y)
        assert owner is not None and owner.code == covering[0]


def test_points_outside_the_district_have_no_grid(index: GridIndex) -> None:
    assert index.locate(WEST - 0.01, SOUTH + 0.01) is None
    assert index.locate(116.4, 39.9) is None


def test_neighbours_touch_and_are_symmetric(index: GridIndex) -> None:
    for grid in index.units[:40]:
        neighbours = index.neighbours(grid.code)
        assert 3 <= len(neighbours) <= 12
        for code in neighbours:
            other = index.get(code)
            assert other is not None and other.geometry.intersects(grid.geometry)
            assert grid.code in index.neighbours(code)


def test_workers_cover_every_grid_and_sensors_are_inside(index: GridIndex) -> None:
    workers = demo_workers(demo_grids())
    assert {w.grid_code for w in workers} == {g.code for g in index.units}
    assert len({w.id for w in workers}) == len(workers)
    sensors = demo_sensors()
    assert len(sensors) >= 5
    assert all(index.locate(s.lon, s.lat) is not None for s in sensors)


def test_geojson_round_trip(index: GridIndex) -> None:
    grids = grids_from_geojson(index.to_geojson())
    again = GridIndex(grids, version=2)
    assert len(again.units) == len(index.units)
    assert again.locate(120.18, 30.26) == index.locate(120.18, 30.26)
