import itertools
import random

import pytest

from geo import haversine_m
from geo.crs import (
    CRS,
    bd09_to_gcj02,
    from_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    to_wgs84,
    wgs84_to_gcj02,
)

CHINA_POINTS = [
    (lon, lat)
    for lon, lat in itertools.product(
        (75.5, 90.0, 104.1, 116.4, 120.18, 126.6, 134.0), (18.3, 23.1, 30.26, 39.9, 45.7, 52.9)
    )
]


@pytest.mark.parametrize(("lon", "lat"), CHINA_POINTS)
def test_gcj02_inverse_is_within_half_a_metre(lon: float, lat: float) -> None:
    back = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
    assert haversine_m(lon, lat, *back) < 0.5


@pytest.mark.parametrize(("lon", "lat"), CHINA_POINTS)
def test_bd09_round_trip(lon: float, lat: float) -> None:
    for crs in (CRS.GCJ02, CRS.BD09):
        assert haversine_m(lon, lat, *to_wgs84(*from_wgs84(lon, lat, crs), crs)) < 0.5
    assert haversine_m(lon, lat, *bd09_to_gcj02(*gcj02_to_bd09(lon, lat))) < 0.5


def test_offsets_in_hangzhou_have_the_known_size() -> None:
    # GCJ-02 shifts Hangzhou by a few hundred metres; BD-09 adds roughly another kilometre.
    lon, lat = 120.18, 30.26
    gcj = wgs84_to_gcj02(lon, lat)
    assert 300 < haversine_m(lon, lat, *gcj) < 700
    assert gcj[0] > lon and gcj[1] < lat  # east and south, as everywhere in eastern China
    bd = from_wgs84(lon, lat, CRS.BD09)
    assert 800 < haversine_m(*gcj, *bd) < 1300


@pytest.mark.parametrize(("lon", "lat"), [(2.35, 48.85), (-74.0, 40.7), (139.7, 35.7)])
def test_points_outside_china_pass_through_gcj02(lon: float, lat: float) -> None:
    assert wgs84_to_gcj02(lon, lat) == (lon, lat)
    assert gcj02_to_wgs84(lon, lat) == (lon, lat)


def test_wgs84_and_cgcs2000_are_identity() -> None:
    assert to_wgs84(120.1, 30.2, "wgs84") == (120.1, 30.2)
    assert to_wgs84(120.1, 30.2, "cgcs2000") == from_wgs84(120.1, 30.2, CRS.CGCS2000)
    assert from_wgs84(120.1, 30.2, CRS.CGCS2000) == (120.1, 30.2)


def test_haversine_known_distance() -> None:
    # One degree of latitude is about 111.2 km.
    assert haversine_m(120.0, 30.0, 120.0, 31.0) == pytest.approx(111_195, rel=1e-3)


# Published reference pairs (lon, lat) from independent implementations of the same algorithm.
# Implementations differ in the last digits of their constants, by a few centimetres at most.
REFERENCE = [
    # (from, to, input, expected)
    (CRS.WGS84, CRS.GCJ02, (116.404, 39.915), (116.41024449916938, 39.91640428150164)),
    (CRS.WGS84, CRS.GCJ02, (116.39089, 39.90734), (116.39713094, 39.90874107)),
    (CRS.WGS84, CRS.GCJ02, (116.0, 40.0), (116.006141221789, 40.001213650174)),
    (CRS.WGS84, CRS.GCJ02, (121.0917077, 30.6107779), (121.09626935575027, 30.608604331756705)),
    (CRS.WGS84, CRS.BD09, (121.0917077, 30.6107779), (121.10271732371203, 30.61484572185035)),
    (CRS.GCJ02, CRS.BD09, (116.404, 39.915), (116.41036949371029, 39.92133699351021)),
    (CRS.GCJ02, CRS.BD09, (123.0, 45.0), (123.00636499, 45.00636899)),
    (CRS.BD09, CRS.GCJ02, (116.404, 39.915), (116.39762729119315, 39.90865673957631)),
    (CRS.GCJ02, CRS.WGS84, (123.0, 45.0), (122.99395597, 44.99804071)),
]


def _convert(src: CRS, dst: CRS, lon: float, lat: float) -> tuple[float, float]:
    if (src, dst) == (CRS.GCJ02, CRS.BD09):
        return gcj02_to_bd09(lon, lat)
    if (src, dst) == (CRS.BD09, CRS.GCJ02):
        return bd09_to_gcj02(lon, lat)
    return from_wgs84(*to_wgs84(lon, lat, src), dst)


@pytest.mark.parametrize(("src", "dst", "point", "expected"), REFERENCE)
def test_published_reference_pairs(
    src: CRS, dst: CRS, point: tuple[float, float], expected: tuple[float, float]
) -> None:
    got = _convert(src, dst, *point)
    assert haversine_m(*got, *expected) < 0.05
    # And back again: the inverse lands within half a metre of where we started.
    assert haversine_m(*_convert(dst, src, *got), *point) < 0.5


def test_inverse_over_china_is_within_half_a_metre() -> None:
    rng = random.Random(8)
    worst = 0.0
    for _ in range(2000):
        lon, lat = rng.uniform(74.0, 134.9), rng.uniform(4.0, 53.5)
        for crs in (CRS.GCJ02, CRS.BD09):
            worst = max(worst, haversine_m(lon, lat, *to_wgs84(*from_wgs84(lon, lat, crs), crs)))
    assert worst < 0.5
