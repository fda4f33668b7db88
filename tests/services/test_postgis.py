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

from app.core.grids import has_postgis_geometry
from geo.demo_city import EAST, NORTH, SOUTH, WEST
from tests.harness import PG_ADMIN_URL, Harness


@pytest.fixture(autouse=True)
def _needs_postgres() -> None:
    if not PG_ADMIN_URL:
        pytest.fail("run through deploy/local/with-services.sh (make unit-services)")


async def test_postgis_owner_agrees_with_the_index(h: Harness) -> None:
    async with h.runtime.db.reader() as s:
        available = await s.scalar(
            text("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'")
        )
        has_geom = await has_postgis_geometry(s)
    if not available:
        assert os.environ.get("CI") != "true", "CI installs PostGIS"
        assert has_geom is False  # no PostGIS: nothing required, nothing added
        return
    assert has_geom is True
    index = h.runtime.grids.require()
    rng = random.Random(5)
    points = [(rng.uniform(WEST, EAST), rng.uniform(SOUTH, NORTH)) for _ in range(400)]
    for grid in index.units[:25]:  # shared vertices and edge midpoints: the boundary rule
        coords = list(grid.geometry.exterior.coords)
        points += coords[:-1]
        points += [((a[0] + b[0]) / 2, (a[1] + b[1]) / 2) for a, b in itertools.pairwise(coords)]
    points += [(WEST - 0.01, SOUTH), (EAST + 0.001, NORTH + 0.001)]  # outside
    query = text(
        "SELECT code FROM grids WHERE grid_set_version = :v AND level = 'unit' "
        "AND ST_Covers(geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)) "
        "ORDER BY code LIMIT 1"
    )
    async with h.runtime.db.reader() as s:
        for lon, lat in points:
            owner = await s.scalar(query, {"v": index.version, "lon": lon, "lat": lat})
            mine = index.locate(lon, lat)
            assert owner == (mine.code if mine else None), (lon, lat)
            assert mine is None or mine.geometry.covers(shapely.Point(lon, lat))
