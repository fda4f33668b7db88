"""Grid sets in the database and the live index built from the active one.

A grid set is immutable once stored; importing grids stores a new version and makes it active.
The live index is one object swapped by reference, so a request sees the old set or the new one,
never half of each.
"""

from __future__ import annotations

from datetime import datetime

from shapely.geometry import mapping, shape
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.models import GridRow, GridSet
from geo import Grid, GridIndex, GridLevel


class LiveGrids:
    """Holds the current GridIndex; replace `index` to swap sets atomically."""

    def __init__(self, index: GridIndex | None = None) -> None:
        self.index = index

    def require(self) -> GridIndex:
        if self.index is None:
            raise RuntimeError("no grid set is loaded")
        return self.index


async def load_active_index(session: AsyncSession) -> GridIndex | None:
    version = await session.scalar(select(GridSet.version).where(GridSet.active.is_(True)))
    if version is None:
        return None
    rows = await session.scalars(select(GridRow).where(GridRow.grid_set_version == version))
    grids = [
        Grid(r.code, GridLevel(r.level), r.name, r.parent_code, shape(r.geometry)) for r in rows
    ]
    return GridIndex(grids, version)


async def store_grid_set(
    session: AsyncSession, grids: list[Grid], *, source: str, now: datetime
) -> int:
    """Store `grids` as a new version and make it the active one. Returns the version."""
    version = (await session.scalar(select(func.max(GridSet.version))) or 0) + 1
    await session.execute(update(GridSet).values(active=False))
    session.add(GridSet(version=version, source=source[:200], active=True, created_at=now))
    await session.flush()
    session.add_all(
        GridRow(
            grid_set_version=version,
            code=g.code,
            level=g.level.value,
            name=g.name,
            parent_code=g.parent_code,
            geometry=dict(mapping(g.geometry)),
        )
        for g in grids
    )
    await session.flush()
    if await has_postgis_geometry(session):
        await session.execute(
            text(
                "UPDATE grids SET geom = ST_SetSRID(ST_GeomFromGeoJSON(geometry::text), 4326) "
                "WHERE grid_set_version = :version"
            ),
            {"version": version},
        )
    return version


async def has_postgis_geometry(session: AsyncSession) -> bool:
    """Whether grids carry a PostGIS `geom` column (PostgreSQL with PostGIS, migration 0002)."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    found = await session.scalar(
        text(
            "SELECT 1 FROM information_schema.columns "
            "WHERE table_name = 'grids' AND column_name = 'geom'"
        )
    )
    return found is not None
