"""Grid sets in the database and the live index built from the active one.

A grid set is immutable once stored; a valid import stores a new version and makes it active in
the same transaction. Each process holds one `GridIndex` in `LiveGrids` and replaces it by
reference when the active version changes (the importing process at once, the others within
`geo.reload_interval_s`), so a request sees the old set or the new one, never half of each.
Building an index is CPU work done off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shapely.geometry import mapping
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import GridRow, GridSet
from app.platform.db import Database
from app.platform.errors import AppError
from app.platform.settings import GeoSettings
from geo import (
    Grid,
    GridIndex,
    GridLevel,
    ImportReport,
    Progress,
    Rules,
    check_collection,
    no_progress,
)
from geo.validate import geometry_from_geojson

log = logging.getLogger(__name__)


class InvalidGridSet(AppError):
    """The grid set has problems; `problems` lists each, by feature."""

    status, code = 422, "invalid_grid_set"


def import_rules(settings: GeoSettings, *, allow_gaps: bool = False) -> Rules:
    return Rules(
        unit_code_digits=frozenset(settings.unit_code_digits),
        min_area_m2=settings.min_area_m2,
        allow_gaps=allow_gaps,
    )


class LiveGrids:
    """Holds the current GridIndex; `index` is replaced whole, never changed in place."""

    def __init__(self, index: GridIndex | None = None, *, snap_m: float = 0.0) -> None:
        self.index = index
        self.snap_m = snap_m

    def require(self) -> GridIndex:
        if self.index is None:
            raise RuntimeError("no grid set is loaded")
        return self.index

    async def refresh(self, db: Database) -> bool:
        """Swap in the active grid set if it is not the one held. Returns whether it swapped."""
        async with db.reader() as session:
            version = await active_version(session)
            if version is None or (self.index is not None and self.index.version == version):
                return False
            rows = list(await session.execute(_ROWS.where(GridRow.grid_set_version == version)))
        index = await asyncio.to_thread(_build_index, rows, version, self.snap_m)
        self.index = index
        log.info("grid set version %s is live (%s unit grids)", version, len(index))
        return True


_ROWS = select(
    GridRow.code,
    GridRow.level,
    GridRow.name,
    GridRow.parent_code,
    GridRow.geometry,
    GridRow.responsible,
)


def _build_index(rows: list[Any], version: int, snap_m: float) -> GridIndex:
    grids = [
        Grid(code, GridLevel(level), name, parent, geometry_from_geojson(geom), responsible)
        for code, level, name, parent, geom, responsible in rows
    ]
    return GridIndex(grids, version, snap_m=snap_m)


async def active_version(session: AsyncSession) -> int | None:
    return await session.scalar(select(GridSet.version).where(GridSet.active.is_(True)))


async def store_grid_set(
    session: AsyncSession,
    grids: list[Grid],
    *,
    source: str,
    now: datetime,
    progress: Progress = no_progress,
) -> int:
    """Store `grids` as a new version and make it the active one. Returns the version."""
    version = (await session.scalar(select(func.max(GridSet.version))) or 0) + 1
    await session.execute(update(GridSet).values(active=False))
    session.add(GridSet(version=version, source=source[:200], active=True, created_at=now))
    await session.flush()
    rows = [
        {
            "grid_set_version": version,
            "code": g.code,
            "level": g.level.value,
            "name": g.name,
            "parent_code": g.parent_code,
            "geometry": dict(mapping(g.geometry)),
            "responsible": g.responsible,
        }
        for g in grids
    ]
    for start in range(0, len(rows), 5000):
        progress("storing grids", start, len(rows))
        await session.execute(insert(GridRow), rows[start : start + 5000])
    progress("storing grids", len(rows), len(rows))
    if await has_postgis_geometry(session):
        await session.execute(
            text(
                "UPDATE grids SET geom = ST_SetSRID(ST_GeomFromGeoJSON(geometry::text), 4326) "
                "WHERE grid_set_version = :version"
            ),
            {"version": version},
        )
    return version


@dataclass(frozen=True)
class Imported:
    version: int
    report: ImportReport

    def to_dict(self) -> dict[str, Any]:
        body = self.report.to_dict()
        body.pop("problems")
        body.pop("valid")
        return {"version": self.version, **body}


async def import_grid_set(
    db: Database,
    live: LiveGrids | None,
    collection: Any,
    rules: Rules,
    *,
    source: str,
    now: datetime,
    progress: Progress = no_progress,
) -> Imported:
    """Validate a whole FeatureCollection, then store it as the new active version.

    Nothing is written unless the set is valid (InvalidGridSet lists every problem). With
    `live`, this process's index is swapped as soon as the version is committed.
    """
    report = await check_grid_set(collection, rules, progress)
    async with db.transaction() as uow:
        session = uow.session
        version = await store_grid_set(
            session, report.grids, source=source, now=now, progress=progress
        )
    if live is not None:
        index = await asyncio.to_thread(GridIndex, report.grids, version, snap_m=live.snap_m)
        if live.index is None or live.index.version < version:
            live.index = index
    return Imported(version, report)


async def check_grid_set(
    collection: Any, rules: Rules, progress: Progress = no_progress
) -> ImportReport:
    """The validation report of a FeatureCollection (CPU work, off the event loop); raises
    InvalidGridSet listing every problem when the set cannot be stored."""
    report = await asyncio.to_thread(check_collection, collection, rules, progress)
    if not report.ok:
        raise InvalidGridSet(
            f"the grid set has {len(report.problems)} problem(s); nothing was changed",
            problems=[p.to_dict() for p in report.problems],
            warnings=[p.to_dict() for p in report.warnings],
        )
    return report


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
