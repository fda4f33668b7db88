"""Grids and the point index.

A grid set is a hierarchy street → community → unit grid. Only unit grids are indexed for
`locate`; streets and communities exist for names, paths and filtering.

Boundary rule: a point that lies on a shared edge or vertex is covered by several unit grids;
it belongs to the one with the smallest code, so every point inside the service area has exactly
one owner and the answer never depends on insertion order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import shapely
from shapely.geometry import Point, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.strtree import STRtree


class GridLevel(StrEnum):
    STREET = "street"
    COMMUNITY = "community"
    UNIT = "unit"


@dataclass(frozen=True)
class Grid:
    code: str
    level: GridLevel
    name: str
    parent_code: str | None
    geometry: BaseGeometry = field(repr=False, compare=False)

    def to_feature(self) -> dict[str, Any]:
        return {
            "type": "Feature",
            "properties": {
                "code": self.code,
                "level": self.level.value,
                "name": self.name,
                "parent": self.parent_code,
            },
            "geometry": mapping(self.geometry),
        }


class GridImportError(ValueError):
    """A grid collection that cannot be used; `problems` names every feature at fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems[:10]))
        self.problems = problems


def grids_from_geojson(collection: dict[str, Any]) -> list[Grid]:
    """Parse a FeatureCollection whose features carry `code`, `level`, `name` and `parent`.

    Validates every feature before returning; raises GridImportError listing all problems.
    """
    problems: list[str] = []
    if collection.get("type") != "FeatureCollection" or not isinstance(
        collection.get("features"), list
    ):
        raise GridImportError(["not a GeoJSON FeatureCollection"])
    grids: list[Grid] = []
    for i, feature in enumerate(collection["features"]):
        props = (feature or {}).get("properties") or {}
        code = str(props.get("code", ""))
        where = f"feature {i} ({code or 'no code'})"
        try:
            level = GridLevel(props.get("level", "unit"))
        except ValueError:
            problems.append(f"{where}: unknown level {props.get('level')!r}")
            continue
        if not code.isdigit():
            problems.append(f"{where}: code must be digits")
            continue
        try:
            geom = shape(feature["geometry"])
        except Exception as exc:  # shapely raises several types for bad geometry
            problems.append(f"{where}: unreadable geometry ({exc})")
            continue
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            problems.append(f"{where}: geometry must be a Polygon or MultiPolygon")
            continue
        if not geom.is_valid:
            problems.append(f"{where}: invalid geometry ({shapely.is_valid_reason(geom)})")
            continue
        parent = props.get("parent")
        grids.append(
            Grid(code, level, str(props.get("name") or code), str(parent) if parent else None, geom)
        )
    codes = [g.code for g in grids]
    seen: set[str] = set()
    for code in codes:
        if code in seen:
            problems.append(f"duplicate code {code}")
        seen.add(code)
    for g in grids:
        if g.parent_code and g.parent_code not in seen:
            problems.append(f"grid {g.code}: parent {g.parent_code} not in the collection")
    if not any(g.level is GridLevel.UNIT for g in grids) and not problems:
        problems.append("no unit grids")
    if problems:
        raise GridImportError(problems)
    return grids


class GridIndex:
    """An immutable index over one grid-set version; swap the whole object to change grids."""

    def __init__(self, grids: Iterable[Grid], version: int) -> None:
        self.version = version
        self._by_code: dict[str, Grid] = {g.code: g for g in grids}
        self._units: list[Grid] = sorted(
            (g for g in self._by_code.values() if g.level is GridLevel.UNIT), key=lambda g: g.code
        )
        self._tree = STRtree([g.geometry for g in self._units])
        self._neighbours: dict[str, tuple[str, ...]] = {}

    def __len__(self) -> int:
        return len(self._units)

    @property
    def units(self) -> Sequence[Grid]:
        return self._units

    def all(self) -> list[Grid]:
        return sorted(self._by_code.values(), key=lambda g: g.code)

    def get(self, code: str) -> Grid | None:
        return self._by_code.get(code)

    def locate(self, lon: float, lat: float) -> Grid | None:
        """The unit grid owning a WGS-84 point, or None outside the service area."""
        hits = self._tree.query(Point(lon, lat), predicate="intersects")
        if len(hits) == 0:
            return None
        # _units is sorted by code, so the smallest index is the smallest code.
        return self._units[int(min(hits))]

    def path(self, code: str) -> list[Grid]:
        """Ancestors first, the grid itself last."""
        chain: list[Grid] = []
        grid = self._by_code.get(code)
        while grid is not None:
            chain.append(grid)
            grid = self._by_code.get(grid.parent_code) if grid.parent_code else None
        return list(reversed(chain))

    def neighbours(self, code: str) -> tuple[str, ...]:
        """Unit grids that touch `code` (edge or vertex), nearest centroid first."""
        cached = self._neighbours.get(code)
        if cached is not None:
            return cached
        grid = self._by_code.get(code)
        if grid is None or grid.level is not GridLevel.UNIT:
            return ()
        hits = self._tree.query(grid.geometry, predicate="intersects")
        centre = grid.geometry.centroid
        found = sorted(
            (self._units[int(i)] for i in hits if self._units[int(i)].code != code),
            key=lambda g: (g.geometry.centroid.distance(centre), g.code),
        )
        result = tuple(g.code for g in found)
        self._neighbours[code] = result
        return result

    def to_geojson(self, level: GridLevel | None = None) -> dict[str, Any]:
        return {
            "type": "FeatureCollection",
            "features": [g.to_feature() for g in self.all() if level is None or g.level is level],
        }
