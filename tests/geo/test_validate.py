"""Import validation: every problem of a grid set is found, named by feature, and nothing else."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from shapely.geometry import mapping

from geo import GridIndex, GridLevel
from geo.demo_city import demo_grids
from geo.synthetic import Bounds, synthetic_city
from geo.validate import (
    GridImportError,
    ProblemKind,
    Rules,
    area_m2,
    check_collection,
    grids_from_geojson,
)
from tests.geo.cityblock import COMMUNITY, STREET, at, cell, code, collection, feature, unit_shapes


def kinds(report: Any) -> list[str]:
    return sorted(p.kind.value for p in report.problems)


def test_a_clean_set_is_valid() -> None:
    report = check_collection(collection())
    assert report.ok, report.problems
    assert report.warnings == []
    assert len(report.grids) == 10
    assert report.to_dict()["units"] == 7


def test_generated_sets_are_valid_and_round_trip() -> None:
    for grids in (demo_grids(), synthetic_city(12, 8, bounds=Bounds(121.3, 31.1, 121.324, 31.116))):
        fc = json.loads(json.dumps(GridIndex(grids, 1).to_geojson()))
        report = check_collection(fc)
        assert report.ok, report.problems[:3]
        assert [g.code for g in report.grids] == sorted(g.code for g in grids)


def test_overlapping_grids_are_named_in_pairs_with_their_area() -> None:
    shapes = unit_shapes()
    shapes["02"] = cell(0.9, 0, 2, 1)  # B reaches 0.1 × 1 into A
    report = check_collection(collection(shapes))
    assert kinds(report) == ["overlap"]
    (overlap,) = report.problems
    assert (overlap.code, overlap.others) == (code("01"), (code("02"),))
    assert overlap.feature == 3  # the district, street and community come first
    expected = area_m2(cell(0.9, 0, 1, 1))
    assert overlap.area_m2 == pytest.approx(expected, rel=1e-6)
    assert 100_000 < expected < 110_000  # 96 m × 1.1 km at 30.2° N
    x, y = overlap.at or (0, 0)
    assert at(0.9, 0)[0] <= x <= at(1, 0)[0] and at(0, 0)[1] <= y <= at(0, 1)[1]


def test_slivers_below_the_tolerance_are_accepted() -> None:
    shapes = unit_shapes()
    shapes["02"] = cell(1 - 1e-6, 0, 2, 1)  # ~1.1 m² of overlap from a surveying wobble
    assert check_collection(collection(shapes), Rules(min_area_m2=2.0)).ok
    assert kinds(check_collection(collection(shapes), Rules(min_area_m2=0.5))) == ["overlap"]


def test_a_hole_in_the_service_area_is_a_gap_unless_allowed() -> None:
    shapes = unit_shapes()
    del shapes["04"]  # C's hole is left empty
    report = check_collection(collection(shapes))
    assert kinds(report) == ["gap"]
    (gap,) = report.problems
    assert gap.others == (code("03"),)
    assert gap.area_m2 == pytest.approx(area_m2(cell(0.4, 1.4, 0.6, 1.6)), rel=1e-6)
    assert gap.feature is None and gap.at is not None
    allowed = check_collection(collection(shapes), Rules(allow_gaps=True))
    assert allowed.ok and [w.kind for w in allowed.warnings] == [ProblemKind.GAP]


def test_a_missing_grid_at_the_edge_is_a_gap_of_the_district() -> None:
    shapes = unit_shapes()
    del shapes["07"]
    report = check_collection(collection(shapes))
    assert kinds(report) == ["gap"]
    assert set(report.problems[0].others) == {code("05"), code("06")}
    assert "district" in report.problems[0].message
    assert check_collection(collection(shapes), Rules(allow_gaps=True)).ok
    # Without the levels above, the outline of the units is the service area: no gap.
    assert check_collection(collection(shapes, top=False)).ok


def test_codes_are_checked_against_cjt213_and_their_parents() -> None:
    shapes = unit_shapes()
    fc = collection(shapes)
    units = fc["features"][3:]
    units[0]["properties"]["code"] = "x1"
    units[1]["properties"]["code"] = COMMUNITY + "002"  # 15 digits: a city variant
    units[2]["properties"]["code"] = "33010600200103"  # community 002: not its parent's
    units[3]["properties"]["parent"] = STREET  # a unit under a street
    units[4]["properties"]["parent"] = "330106001009"  # not in the set
    units[5]["properties"]["parent"] = None
    fc["features"].append(feature(code("06"), "unit", COMMUNITY, cell(5, 5, 6, 6)))
    report = check_collection(fc)
    by_feature = {(p.feature, p.kind.value) for p in report.problems}
    assert (3, "bad_code") in by_feature
    assert (4, "bad_code") in by_feature  # 15 digits not allowed by default
    assert (5, "bad_code") in by_feature
    assert (6, "bad_parent") in by_feature
    assert (7, "orphan") in by_feature
    assert (8, "orphan") in by_feature
    assert (10, "duplicate_code") in by_feature
    assert all(p.message for p in report.problems)
    with pytest.raises(GridImportError) as err:
        grids_from_geojson(fc)
    assert err.value.report.problems == report.problems


def test_fifteen_digit_unit_codes_by_configuration() -> None:
    fc = collection()
    for f in fc["features"][3:]:
        f["properties"]["code"] = f["properties"]["code"][:12] + "0" + f["properties"]["code"][12:]
    assert kinds(check_collection(fc)) == ["bad_code"] * 7
    report = check_collection(fc, Rules(unit_code_digits=frozenset({14, 15})))
    assert report.ok and all(len(g.code) == 15 for g in report.grids if g.level is GridLevel.UNIT)


def test_broken_geometries_are_reported_with_the_reason_and_place() -> None:
    bowtie = {
        "type": "Polygon",
        "coordinates": [[at(0, 0), at(1, 1), at(1, 0), at(0, 1), at(0, 0)]],
    }
    extra = [
        feature(code("11"), "unit", COMMUNITY, bowtie),
        feature(code("12"), "unit", COMMUNITY, {"type": "Point", "coordinates": at(0, 0)}),
        feature(code("13"), "unit", COMMUNITY, {"type": "Polygon", "coordinates": [[1, 2]]}),
        feature(code("14"), "unit", COMMUNITY, {"type": "Polygon", "coordinates": []}),
        feature(
            code("15"),
            "unit",
            COMMUNITY,
            {"type": "Polygon", "coordinates": [[[0, 0], [200, 0], [200, 1], [0, 0]]]},
        ),
        feature(code("16"), "unit", COMMUNITY, mapping(cell(0, 0, 1, 1)) | {"type": "Ring"}),
        {"type": "Feature", "properties": {"code": code("17"), "level": "block"}},
        "not a feature",
    ]
    report = check_collection(collection(extra=extra))
    found = {p.feature: p for p in report.problems}
    assert found[10].kind is ProblemKind.INVALID_GEOMETRY
    assert "Self-intersection" in found[10].message
    assert found[10].at == pytest.approx(at(0.5, 0.5))
    assert found[11].kind is ProblemKind.BAD_GEOMETRY and "Point" in found[11].message
    assert found[12].kind is ProblemKind.BAD_GEOMETRY
    assert found[13].kind is ProblemKind.BAD_GEOMETRY
    assert found[14].kind is ProblemKind.BAD_GEOMETRY and "longitude" in found[14].message
    assert found[15].kind is ProblemKind.BAD_GEOMETRY
    assert found[16].kind is ProblemKind.BAD_LEVEL
    assert found[17].kind is ProblemKind.BAD_FEATURE
    assert set(found) == set(range(10, 18))  # the valid grids raise nothing


def test_non_finite_coordinates_are_refused() -> None:
    nan = {"type": "Polygon", "coordinates": [[[0, 0], [math.nan, 0], [1, 1], [0, 0]]]}
    report = check_collection(collection(extra=[feature(code("11"), "unit", COMMUNITY, nan)]))
    assert kinds(report) == ["bad_geometry"]


def test_a_parent_must_match_its_children() -> None:
    fc = collection()
    fc["features"][2]["geometry"] = mapping(cell(0, 0, 3.5, 2))  # the community is too small
    report = check_collection(fc)
    assert ProblemKind.PARENT_MISMATCH in {p.kind for p in report.problems}
    mismatch = {p.code: p for p in report.problems if p.kind is ProblemKind.PARENT_MISMATCH}
    assert "outside" in mismatch[COMMUNITY].message  # its unit grids stick out of it
    assert "uncovered" in mismatch[STREET].message  # and it leaves part of its street bare


@pytest.mark.parametrize("bad", [None, [], {"type": "Feature"}, {"type": "FeatureCollection"}])
def test_not_a_collection(bad: Any) -> None:
    assert kinds(check_collection(bad)) == ["not_a_feature_collection"]


def test_a_set_without_unit_grids() -> None:
    assert kinds(check_collection(collection({}))) == ["no_unit_grids"]


def test_the_report_serialises_to_json() -> None:
    shapes = unit_shapes()
    shapes["02"] = cell(0.9, 0, 2, 1)
    body = check_collection(collection(shapes)).to_dict()
    assert body["valid"] is False
    (problem,) = body["problems"]
    assert problem["kind"] == "overlap" and problem["others"] == [code("02")]
    assert json.loads(json.dumps(body)) == body
