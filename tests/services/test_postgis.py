"""PostGIS, where PostgreSQL has it: grids stored as geometry agree with the in-memory index.

Runs in the services suite (make unit-services); there PostgreSQL is required and, under CI
(which installs PostGIS), so is PostGIS. A PostgreSQL without PostGIS must work all the same.
"""

from __future__ import annotations

import itertools
import os
import random

import pytest
import shapely
from sqlalchemy import text

from app.gridsets.store import has_postgis_geometry, import_grid_set, import_rules
from geo import GridIndex
from geo.demo_city import EAST, NORTH, SOUTH, WEST
from tests.geo.cityblock import collection
from tests.harness import PG_ADMIN_URL, Harness


@pytest.fixture(autouse=True)
def _needs_postgres() -> None:
    if not PG_ADMIN_URL:
        pytest.fail("run through deploy/local/with-services.sh (make unit-services)")


OWNERS = text(
    "SELECT DISTINCT ON (p.i) p.i, g.code "
    "FROM unnest(CAST(:xs AS float8[]), CAST(:ys AS float8[])) WITH ORDINALITY AS p(x, y, i) "
    "JOIN grids g ON g.grid_set_version = :v AND g.level = 'unit' "
    "AND ST_Intersects(g.geom, ST_SetSRID(ST_MakePoint(p.x, p.y), 4326)) "
    "ORDER BY p.i, g.code"
)


def boundary_points(index: GridIndex) -> list[tuple[float, float]]:
    """Every vertex and every edge midpoint of every unit grid: the boundary rule's cases."""
    points: set[tuple[float, float]] = set()
    for grid in index.units:
        coords = [tuple(c) for c in shapely.get_coordinates(grid.geometry.boundary).tolist()]
        points.update((x, y) for x, y in coords)
        points.update(((a[0] + b[0]) / 2, (a[1] + b[1]) / 2) for a, b in itertools.pairwise(coords))
    return sorted(points)


async def postgis_owners(
    h: Harness, version: int, points: list[tuple[float, float]]
) -> list[str | None]:
    async with h.runtime.db.reader() as s:
        rows = await s.execute(
            OWNERS, {"xs": [p[0] for p in points], "ys": [p[1] for p in points], "v": version}
        )
        found = {int(i): code for i, code in rows}
    return [found.get(i + 1) for i in range(len(points))]


async def postgis_present(h: Harness) -> bool:
    async with h.runtime.db.reader() as s:
        available = await s.scalar(
            text("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'")
        )
        has_geom = await has_postgis_geometry(s)
    if not available:
        assert os.environ.get("CI") != "true", "CI installs PostGIS"
        assert has_geom is False  # no PostGIS: nothing required, nothing added
        return False
    assert has_geom is True
    return True


def agree(index: GridIndex, points: list[tuple[float, float]], theirs: list[str | None]) -> None:
    exact = GridIndex(index.all(), index.version)  # no snapping: PostGIS does not snap
    mine = exact.locate_many([p[0] for p in points], [p[1] for p in points])
    for point, grid, owner in zip(points, mine, theirs, strict=True):
        assert owner == (grid.code if grid else None), point
        assert grid is None or grid.geometry.intersects(shapely.Point(*point))


async def test_postgis_and_the_index_agree_on_10000_points(h: Harness) -> None:
    if not await postgis_present(h):
        return
    index = h.runtime.grids.require()
    rng = random.Random(5)
    points = boundary_points(index)
    assert len(points) > 1000
    # A hair's breadth either side of the boundary, where rounding would show first.
    for x, y in points[:400]:
        points += [(x + 1e-9, y), (x - 1e-9, y), (x, y + 1e-9), (x, y - 1e-9)]
    pad = 0.002  # some points fall outside the district
    while len(points) < 10_000:
        points.append((rng.uniform(WEST - pad, EAST + pad), rng.uniform(SOUTH - pad, NORTH + pad)))
    theirs = await postgis_owners(h, index.version, points)
    assert sum(o is None for o in theirs) > 50  # the outside really was tested
    agree(index, points, theirs)


async def test_an_imported_set_with_holes_and_multipolygons_agrees(h: Harness) -> None:
    if not await postgis_present(h):
        return
    done = await import_grid_set(
        h.runtime.db,
        h.runtime.grids,
        collection(),
        import_rules(h.settings.geo),
        source="test",
        now=h.clock.now(),
    )
    index = h.runtime.grids.require()
    assert index.version == done.version
    rng = random.Random(6)
    points = boundary_points(index)
    points += [(rng.uniform(120.099, 120.141), rng.uniform(30.199, 30.221)) for _ in range(3000)]
    agree(index, points, await postgis_owners(h, done.version, points))
