"""Grids and the point index.

A grid set is a hierarchy district → street → community → unit grid (CJ/T 213). Only unit grids
are indexed for `locate`; the levels above exist for names, paths, filtering and validation.

Boundary rule: a point on a shared edge or vertex is covered by several unit grids; it belongs to
the one with the smallest code, so every point of the service area has exactly one owner and the
answer never depends on insertion order. "Covered" is GEOS's `intersects` of the point with the
polygon (boundary included), the same predicate PostGIS's ST_Intersects / ST_Covers uses.

Snap rule: a point outside every unit grid but within `snap_m` metres of one belongs to the
nearest (ties: the smallest code); farther out it has no grid (outside the service area).
Distances are measured to the nearest boundary point, converted to metres by haversine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry
from shapely.strtree import STRtree

from geo.distance import haversine_m

METRES_PER_DEGREE = 111_320.0  # along a meridian and along the equator, near enough for radii


class GridLevel(StrEnum):
    DISTRICT = "district"
    STREET = "street"
    COMMUNITY = "community"
    UNIT = "unit"

    @property
    def parent(self) -> GridLevel | None:
        return _PARENT_LEVEL.get(self)


_PARENT_LEVEL = {
    GridLevel.STREET: GridLevel.DISTRICT,
    GridLevel.COMMUNITY: GridLevel.STREET,
    GridLevel.UNIT: GridLevel.COMMUNITY,
}


@dataclass(frozen=True)
class Grid:
    code: str
    level: GridLevel
    name: str
    parent_code: str | None
    geometry: BaseGeometry = field(repr=False, compare=False)
    responsible: str | None = None  # the party answerable for the grid (a unit, an office)

    def to_feature(self) -> dict[str, Any]:
        return {
            "type": "Feature",
            "properties": {
                "code": self.code,
                "level": self.level.value,
                "name": self.name,
                "parent": self.parent_code,
                "responsible": self.responsible,
            },
            "geometry": mapping(self.geometry),
        }


@dataclass(frozen=True)
class _Lattice:
    """A regular lattice of cells over a set of bounding boxes.

    A point's cell is `floor((x - x0) * inv_w)`, `floor((y - y0) * inv_h)`, computed the same
    way everywhere; that computation is monotonic in each coordinate, so a point inside a box
    always falls in one of the cells the box's corners fall in.
    """

    x0: float
    y0: float
    inv_w: float
    inv_h: float
    nx: int
    ny: int

    @classmethod
    def over(cls, bounds: npt.NDArray[np.float64], per_side: int, max_cells: int) -> _Lattice:
        """Cells 1/per_side of the median box, made coarser if there would be over max_cells."""
        x0, y0 = float(bounds[:, 0].min()), float(bounds[:, 1].min())
        width = max(float(np.median(bounds[:, 2] - bounds[:, 0])) / per_side, 1e-9)
        height = max(float(np.median(bounds[:, 3] - bounds[:, 1])) / per_side, 1e-9)
        span_x, span_y = float(bounds[:, 2].max()) - x0, float(bounds[:, 3].max()) - y0
        cells = (span_x / width + 1) * (span_y / height + 1)
        if cells > max_cells:  # very uneven sizes: coarser cells, bounded memory
            scale = math.sqrt(cells / max_cells)
            width, height = width * scale, height * scale
        nx, ny = int(span_x / width) + 1, int(span_y / height) + 1
        return cls(x0, y0, 1.0 / width, 1.0 / height, nx, ny)

    @property
    def size(self) -> int:
        return self.nx * self.ny

    def cell(self, x: float, y: float) -> int:
        """The cell of a point, or -1 outside the lattice (NaN included)."""
        fx = (x - self.x0) * self.inv_w
        fy = (y - self.y0) * self.inv_h
        if not (0.0 <= fx < self.nx and 0.0 <= fy < self.ny):  # NaN fails every comparison
            return -1
        return int(fy) * self.nx + int(fx)

    def cells(
        self, xs: npt.NDArray[np.float64], ys: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.int64]:
        """`cell` for arrays of points."""
        fx = (xs - self.x0) * self.inv_w
        fy = (ys - self.y0) * self.inv_h
        inside = (fx >= 0) & (fx < self.nx) & (fy >= 0) & (fy < self.ny)
        out = np.full(len(xs), -1, dtype=np.int64)
        out[inside] = fy[inside].astype(np.int64) * self.nx + fx[inside].astype(np.int64)
        return out

    def ix(self, xs: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        return np.clip(np.floor((xs - self.x0) * self.inv_w), 0, self.nx - 1).astype(np.int64)

    def iy(self, ys: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        return np.clip(np.floor((ys - self.y0) * self.inv_h), 0, self.ny - 1).astype(np.int64)


class _Buckets:
    """A bucket table over the unit grids' bounding boxes, for single-point lookups.

    Each bucket lists, in ascending index (= code) order, the grids whose bounding box meets it.
    Looking a point up is a few arithmetic steps and a list access, so `locate` costs one exact
    point-in-polygon test per real candidate instead of a geometry allocation and a tree walk.
    """

    def __init__(self, bounds: npt.NDArray[np.float64], max_cells: int) -> None:
        self.lattice = lat = _Lattice.over(bounds, per_side=2, max_cells=max_cells)
        lists: list[list[int]] = [[] for _ in range(lat.size)]
        i0, i1 = lat.ix(bounds[:, 0]).tolist(), lat.ix(bounds[:, 2]).tolist()
        j0, j1 = lat.iy(bounds[:, 1]).tolist(), lat.iy(bounds[:, 3]).tolist()
        for k in range(len(bounds)):
            for j in range(j0[k], j1[k] + 1):
                row = j * lat.nx
                for i in range(i0[k], i1[k] + 1):
                    lists[row + i].append(k)
        empty: tuple[int, ...] = ()
        self.cells = [tuple(c) if c else empty for c in lists]

    def candidates(self, x: float, y: float) -> tuple[int, ...]:
        cell = self.lattice.cell(x, y)
        return self.cells[cell] if cell >= 0 else ()


UNSETTLED, OUTSIDE = -2, -1


class _Raster:
    """Fine cells that lie wholly inside one unit grid, or wholly outside all of them.

    A cell no grid boundary comes near is answered from the table, with no geometry test: every
    point that maps to such a cell is joined to the cell's centre by a path that crosses no
    boundary, so it has the centre's owner. A cell counts as touched when the bounding box of
    a boundary segment, widened by EPS degrees (far beyond floating-point rounding), reaches
    it; touched cells are UNSETTLED and go to the exact test. The lattice's cell computation is
    monotonic in each coordinate, which is what makes the argument hold.
    """

    EPS = 1e-9

    def __init__(
        self,
        geoms: npt.NDArray[Any],
        bounds: npt.NDArray[np.float64],
        per_side: int,
        max_cells: int,
    ) -> None:
        self.lattice = lat = _Lattice.over(bounds, per_side, max_cells)
        touched = np.zeros(lat.size, dtype=bool)
        touched[self._touched(geoms)] = True
        none = np.iinfo(np.int32).max
        best = np.full(lat.size, none, dtype=np.int32)
        i0, i1 = lat.ix(bounds[:, 0]), lat.ix(bounds[:, 2])
        j0, j1 = lat.iy(bounds[:, 1]), lat.iy(bounds[:, 3])
        widths, counts = i1 - i0 + 1, (i1 - i0 + 1) * (j1 - j0 + 1)
        chunk = 2048  # grids per vectorised step: bounded memory
        for start in range(0, len(geoms), chunk):
            ks = np.arange(start, min(start + chunk, len(geoms)))
            grid = np.repeat(ks, counts[ks])
            offsets = np.cumsum(counts[ks]) - counts[ks]
            local = np.arange(len(grid)) - np.repeat(offsets, counts[ks])
            cells = (j0[grid] + local // widths[grid]) * lat.nx + i0[grid] + local % widths[grid]
            free = ~touched[cells]
            grid, cells = grid[free], cells[free]
            cx = lat.x0 + (cells % lat.nx + 0.5) / lat.inv_w
            cy = lat.y0 + (cells // lat.nx + 0.5) / lat.inv_h
            hit = shapely.intersects_xy(geoms[grid], cx, cy)
            np.minimum.at(best, cells[hit], grid[hit].astype(np.int32))  # smallest code wins
        table = np.where(best == none, OUTSIDE, best).astype(np.int32)
        table[touched] = UNSETTLED
        self.table = table
        self.settled = float(np.mean(table != UNSETTLED))

    def _touched(self, geoms: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
        lat = self.lattice
        rings = shapely.get_rings(shapely.get_parts(geoms))
        coords, ring = shapely.get_coordinates(rings, return_index=True)
        same = ring[:-1] == ring[1:]
        a, b = coords[:-1][same], coords[1:][same]
        i0 = lat.ix(np.minimum(a[:, 0], b[:, 0]) - self.EPS)
        i1 = lat.ix(np.maximum(a[:, 0], b[:, 0]) + self.EPS)
        j0 = lat.iy(np.minimum(a[:, 1], b[:, 1]) - self.EPS)
        j1 = lat.iy(np.maximum(a[:, 1], b[:, 1]) + self.EPS)
        marks = np.zeros(lat.size, dtype=bool)
        small = (i1 - i0 <= 1) & (j1 - j0 <= 1)  # nearly every segment: at most 2 × 2 cells
        for cols in (i0[small], i1[small]):
            for rows in (j0[small], j1[small]):
                marks[rows * lat.nx + cols] = True
        for k in np.flatnonzero(~small).tolist():
            for row in range(int(j0[k]), int(j1[k]) + 1):
                marks[row * lat.nx + int(i0[k]) : row * lat.nx + int(i1[k]) + 1] = True
        return np.flatnonzero(marks)

    def lookup(self, x: float, y: float) -> int:
        """The settled owner, OUTSIDE, or UNSETTLED (the exact test must decide)."""
        cell = self.lattice.cell(x, y)
        return int(self.table[cell]) if cell >= 0 else OUTSIDE  # off the lattice: outside

    def lookup_many(
        self, xs: npt.NDArray[np.float64], ys: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.int64]:
        cells = self.lattice.cells(xs, ys)
        out = np.full(len(xs), OUTSIDE, dtype=np.int64)
        on = cells >= 0
        out[on] = self.table[cells[on]]
        return out


class GridIndex:
    """An immutable index over one grid-set version; swap the whole object to change grids."""

    def __init__(self, grids: Iterable[Grid], version: int, *, snap_m: float = 0.0) -> None:
        self.version = version
        self.snap_m = snap_m
        self._by_code: dict[str, Grid] = {g.code: g for g in grids}
        self._units: list[Grid] = sorted(
            (g for g in self._by_code.values() if g.level is GridLevel.UNIT), key=lambda g: g.code
        )
        self._geoms = np.array([g.geometry for g in self._units], dtype=object)
        shapely.prepare(self._geoms)
        self._tree = STRtree(self._geoms)
        self._bounds: list[tuple[float, float, float, float]] = []
        self._buckets: _Buckets | None = None
        self._raster: _Raster | None = None
        if self._units:
            bounds = shapely.bounds(self._geoms)
            self._bounds = [(a, b, c, d) for a, b, c, d in bounds.tolist()]
            self._buckets = _Buckets(bounds, max_cells=max(1024, 8 * len(self._units)))
            self._raster = _Raster(
                self._geoms, bounds, per_side=12, max_cells=max(4096, 160 * len(self._units))
            )
        self._neighbours: dict[str, tuple[str, ...]] = {}

    def __len__(self) -> int:
        return len(self._units)

    @property
    def settled_share(self) -> float:
        """The share of fine cells answered without a geometry test."""
        return self._raster.settled if self._raster else 0.0

    @property
    def units(self) -> Sequence[Grid]:
        return self._units

    def all(self) -> list[Grid]:
        return sorted(self._by_code.values(), key=lambda g: g.code)

    def get(self, code: str) -> Grid | None:
        return self._by_code.get(code)

    # -- locating ------------------------------------------------------------------------------

    def _owner(self, lon: float, lat: float) -> int:
        """Index of the covering unit grid with the smallest code, or -1."""
        if self._buckets is None or self._raster is None:
            return -1
        settled = self._raster.lookup(lon, lat)
        if settled != UNSETTLED:
            return settled
        bounds, geoms, hit = self._bounds, self._geoms, shapely.lib.intersects_xy
        for k in self._buckets.candidates(lon, lat):  # ascending, so the first hit is smallest
            b = bounds[k]
            if b[0] <= lon <= b[2] and b[1] <= lat <= b[3] and hit(geoms[k], lon, lat):
                return k
        return -1

    def locate(self, lon: float, lat: float) -> Grid | None:
        """The unit grid owning a WGS-84 point (boundary and snap rules above), or None."""
        k = self._owner(lon, lat)
        if k < 0 and self.snap_m > 0:
            k = self._snap(lon, lat)
        return self._units[k] if k >= 0 else None

    def _snap(self, lon: float, lat: float) -> int:
        if not (math.isfinite(lon) and math.isfinite(lat)) or abs(lat) >= 89.0:
            return -1
        point = shapely.Point(lon, lat)
        # A search radius in degrees that is never shorter than snap_m in any direction.
        radius = self.snap_m / (METRES_PER_DEGREE * math.cos(math.radians(lat)))
        best: tuple[float, int] | None = None
        for k in sorted(int(i) for i in self._tree.query(point, "dwithin", distance=radius)):
            line = shapely.shortest_line(self._geoms[k], point)
            x, y = line.coords[0]
            metres = haversine_m(lon, lat, x, y)
            if metres <= self.snap_m and (best is None or metres < best[0]):
                best = (metres, k)
        return best[1] if best else -1

    def locate_many(self, lons: npt.ArrayLike, lats: npt.ArrayLike) -> list[Grid | None]:
        """`locate` for many points at once: the same answers, vectorised."""
        xs = np.asarray(lons, dtype=np.float64).ravel()
        ys = np.asarray(lats, dtype=np.float64).ravel()
        if xs.shape != ys.shape:
            raise ValueError("lons and lats differ in length")
        owners = self._owners(xs, ys)
        if self.snap_m > 0:
            for i in np.flatnonzero(owners < 0).tolist():
                owners[i] = self._snap(float(xs[i]), float(ys[i]))
        units = self._units
        return [units[k] if k >= 0 else None for k in owners.tolist()]

    def _owners(self, xs: npt.NDArray[np.float64], ys: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
        if self._buckets is None or self._raster is None or len(xs) == 0:
            return np.full(len(xs), OUTSIDE, dtype=np.int64)
        owners = self._raster.lookup_many(xs, ys)
        live = np.flatnonzero(owners == UNSETTLED)  # only these need the exact test
        # Sorting the points by bucket keeps each grid's point locator hot in the CPU cache.
        keys = self._buckets.lattice.cells(xs[live], ys[live])
        order = live[np.argsort(keys, kind="stable")]
        px, py = xs[order], ys[order]
        point_i, grid_i = self._tree.query(shapely.points(px, py))
        inside = shapely.intersects_xy(self._geoms[grid_i], px[point_i], py[point_i])
        none = np.iinfo(np.int64).max
        best = np.full(len(order), none, dtype=np.int64)
        np.minimum.at(best, point_i[inside], grid_i[inside])
        owners[order] = np.where(best == none, OUTSIDE, best)
        return owners

    # -- the hierarchy -------------------------------------------------------------------------

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

    def to_geojson(
        self, level: GridLevel | None = None, parent: str | None = None
    ) -> dict[str, Any]:
        return {
            "type": "FeatureCollection",
            "version": self.version,
            "features": [
                g.to_feature()
                for g in self.all()
                if (level is None or g.level is level)
                and (parent is None or g.parent_code == parent)
            ],
        }
