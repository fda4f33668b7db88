"""Reading and validating a whole grid set before it is used.

`check_collection` parses a GeoJSON FeatureCollection and reports every problem at once, each
with the feature it concerns, so a surveying office can fix its file in one round:

- per feature: unreadable, non-polygonal, empty, out-of-range or invalid geometry (with the
  reason and where, e.g. a self-intersection), unknown level, malformed code;
- codes: CJ/T 213 lengths per level (district 6, street 9, community 12, unit grid 14, or 15
  where a city's variant is allowed), duplicates, a code that does not extend its parent's;
- hierarchy: orphans (parent missing or absent from the set), a parent of the wrong level,
  a parent whose children do not match its area;
- the set: overlapping grids of one level (with both codes and the area), gaps inside the
  service area (with the grids around them and the area).

Overlaps and gaps smaller than `min_area_m2` are tolerated: surveyed boundaries are never exact,
and the boundary rule of `geo.grids` still gives every point of a sliver one owner. Areas are
computed on a local equirectangular scale at the shape's latitude (good to a fraction of a per
cent at city scale).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Polygon, shape
from shapely.geometry.base import BaseGeometry

from geo.grids import METRES_PER_DEGREE, Grid, GridLevel

CODE_DIGITS = {GridLevel.DISTRICT: 6, GridLevel.STREET: 9, GridLevel.COMMUNITY: 12}
METRES_PER_DEGREE_LAT = 110_574.0
FINITE = "coordinates must be finite longitude, latitude in degrees"


class ProblemKind(StrEnum):
    NOT_A_COLLECTION = "not_a_feature_collection"
    BAD_FEATURE = "bad_feature"
    BAD_LEVEL = "bad_level"
    BAD_CODE = "bad_code"
    DUPLICATE_CODE = "duplicate_code"
    BAD_GEOMETRY = "bad_geometry"
    INVALID_GEOMETRY = "invalid_geometry"
    ORPHAN = "orphan"
    BAD_PARENT = "bad_parent"
    PARENT_MISMATCH = "parent_mismatch"
    OVERLAP = "overlap"
    GAP = "gap"
    NO_UNIT_GRIDS = "no_unit_grids"


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    message: str
    feature: int | None = None  # position in the collection's `features`
    code: str | None = None
    others: tuple[str, ...] = ()  # the other grids involved: an overlap's partner, a gap's rim
    area_m2: float | None = None
    at: tuple[float, float] | None = None  # a point (lon, lat) in or on the problem

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v not in (None, ())}
        out["kind"] = self.kind.value
        if self.area_m2 is not None:
            out["area_m2"] = round(self.area_m2, 1)
        if "others" in out:
            out["others"] = list(self.others)
        if "at" in out:
            out["at"] = [round(self.at[0], 7), round(self.at[1], 7)] if self.at else None
        return out


@dataclass(frozen=True)
class Rules:
    unit_code_digits: frozenset[int] = frozenset({14})  # {14, 15} for cities with 3-digit grids
    min_area_m2: float = 1.0
    allow_gaps: bool = False


Progress = Callable[[str, int, int], None]
"""Told `(stage, done, total)` as long work moves; it may be called from a worker thread."""


def no_progress(stage: str, done: int, total: int) -> None:
    """A Progress that tells no one."""


@dataclass
class ImportReport:
    grids: list[Grid]
    problems: list[Problem] = field(default_factory=list)  # any of these refuses the set
    warnings: list[Problem] = field(default_factory=list)  # tolerated (gaps with allow_gaps)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.ok,
            "grids": len(self.grids),
            "units": sum(1 for g in self.grids if g.level is GridLevel.UNIT),
            "problems": [p.to_dict() for p in self.problems],
            "warnings": [p.to_dict() for p in self.warnings],
        }


class GridImportError(ValueError):
    """A grid set that cannot be used; `report` lists every problem by feature."""

    def __init__(self, report: ImportReport) -> None:
        super().__init__("; ".join(p.message for p in report.problems[:10]))
        self.report = report


def area_m2(geom: BaseGeometry) -> float:
    if geom.is_empty:
        return 0.0
    lat = geom.centroid.y
    scale = METRES_PER_DEGREE * math.cos(math.radians(lat)) * METRES_PER_DEGREE_LAT
    return float(geom.area) * scale


def _point_of(geom: BaseGeometry) -> tuple[float, float]:
    p = geom.representative_point()
    return (p.x, p.y)


_REASON_AT = re.compile(r"\[\s*(-?[\d.eE+-]+)\s+(-?[\d.eE+-]+)\s*\]")


# -- reading features -------------------------------------------------------------------------


def _read_feature(
    i: int, feature: Any, rules: Rules, problems: list[Problem]
) -> tuple[Grid | None, int]:
    """One feature → a Grid, or None with its problems recorded."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        problems.append(Problem(ProblemKind.BAD_FEATURE, f"feature {i} is not a Feature", i))
        return None, i
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        props = {}
    raw_code = props.get("code")
    code = str(raw_code).strip() if isinstance(raw_code, (str, int)) else ""
    where = f"feature {i} ({code or 'no code'})"
    ok = True
    try:
        level = GridLevel(props.get("level", "unit"))
    except ValueError:
        problems.append(
            Problem(
                ProblemKind.BAD_LEVEL,
                f"{where}: unknown level {props.get('level')!r} "
                f"(one of {', '.join(v.value for v in GridLevel)})",
                i,
                code or None,
            )
        )
        return None, i
    digits = rules.unit_code_digits if level is GridLevel.UNIT else {CODE_DIGITS[level]}
    if not code.isascii() or not code.isdigit() or len(code) not in digits:
        want = " or ".join(str(d) for d in sorted(digits))
        problems.append(
            Problem(
                ProblemKind.BAD_CODE,
                f"{where}: a {level.value} code must be {want} digits",
                i,
                code or None,
            )
        )
        ok = False
    geometry = _read_geometry(i, where, code, feature.get("geometry"), problems)
    if geometry is None or not ok:
        return None, i
    parent = props.get("parent")
    name = props.get("name")
    responsible = props.get("responsible")
    return (
        Grid(
            code,
            level,
            str(name)[:200] if name else code,
            str(parent).strip() if parent not in (None, "") else None,
            geometry,
            str(responsible)[:200] if responsible else None,
        ),
        i,
    )


class _NotFinite(ValueError):
    """A coordinate is NaN or infinite."""


def _rings(rings: Any) -> BaseGeometry:
    shell, *holes = (np.asarray(r, dtype=np.float64)[:, :2] for r in rings)
    if not all(np.isfinite(r).all() for r in (shell, *holes)):
        raise _NotFinite
    return shapely.polygons(shell, holes=holes or None)


def geometry_from_geojson(raw: Any) -> BaseGeometry:
    """A GeoJSON geometry mapping as a shapely geometry (polygons by the fast path)."""
    try:
        return _fast_shape(raw)
    except (TypeError, ValueError, KeyError, IndexError, shapely.errors.GEOSException):
        return shape(raw)


def _fast_shape(raw: Any) -> BaseGeometry:
    """Polygon or MultiPolygon GeoJSON through numpy, several times faster than `shape`."""
    kind = raw["type"]
    if kind == "Polygon":
        return _rings(raw["coordinates"])
    if kind == "MultiPolygon":
        return shapely.multipolygons([_rings(p) for p in raw["coordinates"]])
    raise TypeError(kind)


def _read_geometry(
    i: int, where: str, code: str, raw: Any, problems: list[Problem]
) -> BaseGeometry | None:
    def bad(kind: ProblemKind, message: str, at: tuple[float, float] | None = None) -> None:
        problems.append(Problem(kind, f"{where}: {message}", i, code or None, at=at))

    try:
        geom = _fast_shape(raw)
    except _NotFinite:
        bad(ProblemKind.BAD_GEOMETRY, FINITE)
        return None
    except (TypeError, ValueError, KeyError, IndexError, shapely.errors.GEOSException):
        try:  # the general reader, for its error message (or a type the fast one skips)
            geom = shape(raw)
        except Exception as exc:  # shapely raises several types for malformed GeoJSON
            bad(ProblemKind.BAD_GEOMETRY, f"unreadable geometry ({exc})")
            return None
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        bad(
            ProblemKind.BAD_GEOMETRY,
            f"geometry must be a Polygon or MultiPolygon, not {geom.geom_type}",
        )
        return None
    if geom.is_empty:
        bad(ProblemKind.BAD_GEOMETRY, "geometry is empty")
        return None
    coords = shapely.get_coordinates(geom)
    if not np.isfinite(coords).all() or (
        (np.abs(coords[:, 0]) > 180).any() or (np.abs(coords[:, 1]) > 90).any()
    ):
        bad(ProblemKind.BAD_GEOMETRY, FINITE)
        return None
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        m = _REASON_AT.search(reason)
        at = (float(m.group(1)), float(m.group(2))) if m else None
        bad(ProblemKind.INVALID_GEOMETRY, f"invalid geometry: {reason}", at)
        return None
    return geom


# -- whole-set checks -------------------------------------------------------------------------


def _check_codes(grids: list[Grid], at: dict[str, int], problems: list[Problem]) -> None:
    by_code: dict[str, Grid] = {g.code: g for g in grids}
    levels = {g.level for g in grids}
    for g in grids:
        i = at[g.code]
        want = g.level.parent
        if g.parent_code is None:
            if want not in levels:
                continue  # a root: the set has nothing of the level above
            problems.append(
                Problem(ProblemKind.ORPHAN, f"{g.level.value} {g.code} has no parent", i, g.code)
            )
            continue
        parent = by_code.get(g.parent_code)
        if parent is None:
            problems.append(
                Problem(
                    ProblemKind.ORPHAN,
                    f"{g.level.value} {g.code}: parent {g.parent_code} is not in the set",
                    i,
                    g.code,
                    (g.parent_code,),
                )
            )
        elif parent.level is not want:
            problems.append(
                Problem(
                    ProblemKind.BAD_PARENT,
                    f"{g.level.value} {g.code}: parent {parent.code} is a {parent.level.value}, "
                    f"not a {want.value if want else 'root'}",
                    i,
                    g.code,
                    (parent.code,),
                )
            )
        elif not g.code.startswith(parent.code):
            problems.append(
                Problem(
                    ProblemKind.BAD_CODE,
                    f"{g.level.value} {g.code} does not extend its parent's code {parent.code}",
                    i,
                    g.code,
                    (parent.code,),
                )
            )


def _pieces(geom: BaseGeometry) -> list[BaseGeometry]:
    if geom.is_empty:
        return []
    if hasattr(geom, "geoms"):
        return [p for p in geom.geoms if p.geom_type == "Polygon"]
    return [geom] if geom.geom_type == "Polygon" else []


def _union(geoms: Sequence[BaseGeometry], clean: bool) -> BaseGeometry:
    """Union of polygons; the fast coverage union when they are known not to overlap."""
    if clean:
        # The coverage union gives up on some hole layouts (or errs); the full union does not.
        with contextlib.suppress(shapely.errors.GEOSException):
            union = shapely.coverage_union_all(geoms)
            if union.is_valid:
                return union
    return shapely.union_all(geoms)


def _check_overlaps(
    grids: list[Grid], at: dict[str, int], rules: Rules, problems: list[Problem]
) -> bool:
    """Overlaps among grids of one level. Returns whether they form a clean coverage."""
    geoms = np.array([g.geometry for g in grids], dtype=object)
    invalid = shapely.coverage_invalid_edges(geoms)
    suspects = np.flatnonzero(~shapely.is_empty(invalid))
    if len(suspects) == 0:
        return True
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms[suspects], predicate="intersects")
    left = suspects[left]
    pairs = sorted(
        {
            (min(a, b), max(a, b))
            for a, b in zip(left.tolist(), right.tolist(), strict=True)
            if a != b
        }
    )
    for a, b in pairs:
        overlap = shapely.intersection(geoms[a], geoms[b])
        polygons = _pieces(overlap)
        size = sum(area_m2(p) for p in polygons)
        if size > rules.min_area_m2:
            ga, gb = grids[a], grids[b]
            problems.append(
                Problem(
                    ProblemKind.OVERLAP,
                    f"{ga.level.value} {ga.code} and {gb.code} overlap by {size:.1f} m²",
                    at[ga.code],
                    ga.code,
                    (gb.code,),
                    size,
                    _point_of(max(polygons, key=lambda p: p.area)),
                )
            )
    return False


def _gap_problems(
    gaps: BaseGeometry, units: list[Grid], rules: Rules, context: str
) -> Iterable[Problem]:
    tree = None
    for piece in _pieces(gaps):
        size = area_m2(piece)
        if size <= rules.min_area_m2:
            continue
        if tree is None:
            tree = shapely.STRtree([u.geometry for u in units])
        rim = sorted(units[int(k)].code for k in tree.query(piece, predicate="intersects"))
        yield Problem(
            ProblemKind.GAP,
            f"a gap of {size:.1f} m² {context}"
            + (f", between {', '.join(rim[:6])}" if rim else ""),
            None,
            None,
            tuple(rim[:12]),
            size,
            _point_of(piece),
        )


def _check_area(
    grids: list[Grid], at: dict[str, int], clean: bool, rules: Rules, report: ImportReport
) -> None:
    units = [g for g in grids if g.level is GridLevel.UNIT]
    units_union = _union([u.geometry for u in units], clean)
    roots = [g for g in grids if g.level is not GridLevel.UNIT and g.parent_code is None]
    gaps: list[Problem] = []
    # Holes in the union of the unit grids are gaps whatever the hierarchy says.
    holes = shapely.union_all([Polygon(ring) for p in _pieces(units_union) for ring in p.interiors])
    gaps += _gap_problems(holes, units, rules, "inside the service area")
    gap_area = holes
    if roots:
        service = shapely.union_all([r.geometry for r in roots])
        uncovered = shapely.difference(service, shapely.union_all([units_union, holes]))
        gaps += _gap_problems(uncovered, units, rules, "inside the district but in no unit grid")
        gap_area = shapely.union_all([holes, uncovered])
    (report.warnings if rules.allow_gaps else report.problems).extend(gaps)
    # Every parent must be exactly the union of its children.
    children: dict[str, list[Grid]] = {}
    for g in grids:
        if g.parent_code:
            children.setdefault(g.parent_code, []).append(g)
    by_code = {g.code: g for g in grids}
    for code, kids in sorted(children.items()):
        parent = by_code.get(code)
        if parent is None:
            continue
        union = _union([k.geometry for k in kids], clean)
        if shapely.normalize(union).equals_exact(shapely.normalize(parent.geometry), 0):
            continue  # the usual case, settled without an overlay
        outside = area_m2(shapely.difference(union, parent.geometry))
        # What the children leave of the parent, less the gaps already reported above.
        missing = area_m2(shapely.difference(shapely.difference(parent.geometry, union), gap_area))
        if outside > rules.min_area_m2 or missing > rules.min_area_m2:
            report.problems.append(
                Problem(
                    ProblemKind.PARENT_MISMATCH,
                    f"{parent.level.value} {code}: its {kids[0].level.value} grids reach "
                    f"{outside:.1f} m² outside it and leave {missing:.1f} m² of it uncovered",
                    at[code],
                    code,
                    area_m2=outside + missing,
                )
            )


def check_collection(
    collection: Any, rules: Rules | None = None, progress: Progress = no_progress
) -> ImportReport:
    """Parse and validate a FeatureCollection; the report lists every problem found.

    `progress` hears "reading features" (per thousand features) and then "checking the set"
    (the code hierarchy, each level's overlaps, the coverage)."""
    rules = rules or Rules()
    report = ImportReport(grids=[])
    if (
        not isinstance(collection, dict)
        or collection.get("type") != "FeatureCollection"
        or not isinstance(collection.get("features"), list)
    ):
        report.problems.append(
            Problem(ProblemKind.NOT_A_COLLECTION, "not a GeoJSON FeatureCollection")
        )
        return report
    read: list[tuple[Grid, int]] = []
    features = collection["features"]
    for i, feature in enumerate(features):
        if i % 1000 == 0:
            progress("reading features", i, len(features))
        grid, pos = _read_feature(i, feature, rules, report.problems)
        if grid is not None:
            read.append((grid, pos))
    progress("reading features", len(features), len(features))
    seen: dict[str, int] = {}
    grids: list[Grid] = []
    for grid, pos in read:
        if grid.code in seen:
            report.problems.append(
                Problem(
                    ProblemKind.DUPLICATE_CODE,
                    f"feature {pos}: code {grid.code} is already used by feature {seen[grid.code]}",
                    pos,
                    grid.code,
                )
            )
            continue
        seen[grid.code] = pos
        grids.append(grid)
    report.grids = sorted(grids, key=lambda g: g.code)
    if not any(g.level is GridLevel.UNIT for g in grids):
        if not report.problems:
            report.problems.append(Problem(ProblemKind.NO_UNIT_GRIDS, "the set has no unit grids"))
        return report
    steps = 2 + len(GridLevel)
    progress("checking the set", 0, steps)
    _check_codes(report.grids, seen, report.problems)
    clean = True
    for step, level in enumerate(GridLevel, start=1):
        progress("checking the set", step, steps)
        same = [g for g in report.grids if g.level is level]
        if len(same) > 1:
            clean = _check_overlaps(same, seen, rules, report.problems) and clean
    progress("checking the set", steps - 1, steps)
    _check_area(report.grids, seen, clean, rules, report)
    progress("checking the set", steps, steps)
    return report


def grids_from_geojson(collection: Any, rules: Rules | None = None) -> list[Grid]:
    """The grids of a valid collection; raises GridImportError with the full report otherwise."""
    report = check_collection(collection, rules)
    if not report.ok:
        raise GridImportError(report)
    return report.grids
