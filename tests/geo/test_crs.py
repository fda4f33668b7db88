import itertools

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


def test_wgs84_is_identity() -> None:
    assert to_wgs84(120.1, 30.2, "wgs84") == (120.1, 30.2)


def test_haversine_known_distance() -> None:
    # One degree of latitude is about 111.2 km.
    assert haversine_m(120.0, 30.0, 120.0, 31.0) == pytest.approx(111_195, rel=1e-3)
