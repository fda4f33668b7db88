"""A tiny hand-drawn grid set whose every owner can be worked out on paper.

In units of 0.01° from (120.10, 30.20), the district is the 4 × 2 rectangle:

    y=2 +------------------+--------+--------+
        |  C (03)  +--+    |   F    |   E    |
        |          |D |    |  (06)  |  (05)  |
    y=1 +--------+-+--+----+--------+--------+
        |  A(01) |   B(02) |   E    |   G    |
        |        |         |  (05)  |  (07)  |
    y=0 +--------+---------+--------+--------+
        x=0      1         2        3        4

C has a hole that D fills exactly; E is a MultiPolygon of two squares touching at (3, 1).
"""

from __future__ import annotations

from typing import Any

from shapely.geometry import MultiPolygon, Polygon, box, mapping

X0, Y0, STEP = 120.10, 30.20, 0.01
DISTRICT, STREET, COMMUNITY = "330106", "330106001", "330106001001"


def at(x: float, y: float) -> tuple[float, float]:
    return X0 + x * STEP, Y0 + y * STEP


def cell(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    return box(*at(x0, y0), *at(x1, y1))


def unit_shapes() -> dict[str, Polygon | MultiPolygon]:
    hole = cell(0.4, 1.4, 0.6, 1.6)
    return {
        "01": cell(0, 0, 1, 1),
        "02": cell(1, 0, 2, 1),
        "03": Polygon(cell(0, 1, 2, 2).exterior.coords, [hole.exterior.coords]),
        "04": hole,
        "05": MultiPolygon([cell(2, 0, 3, 1), cell(3, 1, 4, 2)]),
        "06": cell(2, 1, 3, 2),
        "07": cell(3, 0, 4, 1),
    }


def feature(code: str, level: str, parent: str | None, geometry: Any) -> dict[str, Any]:
    geo = geometry if isinstance(geometry, dict) else mapping(geometry)
    props = {"code": code, "level": level, "name": f"grid {code}", "parent": parent}
    return {"type": "Feature", "properties": props, "geometry": geo}


def collection(
    units: dict[str, Any] | None = None,
    *,
    top: bool = True,
    extra: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    shapes = unit_shapes() if units is None else units
    features = []
    if top:
        whole = cell(0, 0, 4, 2)
        features += [
            feature(DISTRICT, "district", None, whole),
            feature(STREET, "street", DISTRICT, whole),
            feature(COMMUNITY, "community", STREET, whole),
        ]
    parent = COMMUNITY if top else None
    features += [feature(COMMUNITY + n, "unit", parent, g) for n, g in shapes.items()]
    return {"type": "FeatureCollection", "features": [*features, *(extra or [])]}


def code(n: str) -> str:
    return COMMUNITY + n
