"""WGS-84, GCJ-02 and BD-09 conversions.

Phones in China report GCJ-02 (the national obfuscated datum) or BD-09 (a further offset used by
one map vendor). gridflow stores and indexes WGS-84 only. The forward GCJ-02 transform is the
published closed formula; its inverse has no closed form and is found by fixed-point iteration,
which converges to well under a millimetre in a handful of steps. Points outside China pass through
GCJ-02 unchanged, as the published algorithm does. CGCS2000 is treated as WGS-84 (they differ by
centimetres).
"""

from __future__ import annotations

import math
from enum import StrEnum

_A = 6378245.0  # Krasovsky 1940 semi-major axis used by the GCJ-02 formula
_EE = 0.00669342162296594323  # its first eccentricity squared
_X_PI = math.pi * 3000.0 / 180.0


class CRS(StrEnum):
    WGS84 = "wgs84"
    GCJ02 = "gcj02"
    BD09 = "bd09"
    CGCS2000 = "cgcs2000"  # China's geodetic datum: within centimetres of WGS-84, taken as it


def out_of_china(lon: float, lat: float) -> bool:
    return not (73.66 < lon < 135.05 and 3.86 < lat < 53.55)


def _delta_lat(x: float, y: float) -> float:
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return ret


def _delta_lon(x: float, y: float) -> float:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    if out_of_china(lon, lat):
        return lon, lat
    dlat = _delta_lat(lon - 105.0, lat - 35.0)
    dlon = _delta_lon(lon - 105.0, lat - 35.0)
    radlat = lat / 180.0 * math.pi
    magic = 1 - _EE * math.sin(radlat) ** 2
    sqrtmagic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * math.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * math.cos(radlat) * math.pi)
    return lon + dlon, lat + dlat


def gcj02_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """Invert the GCJ-02 offset by fixed-point iteration (converges to ~1e-9 degrees)."""
    if out_of_china(lon, lat):
        return lon, lat
    w_lon, w_lat = lon, lat
    for _ in range(30):
        g_lon, g_lat = wgs84_to_gcj02(w_lon, w_lat)
        d_lon, d_lat = lon - g_lon, lat - g_lat
        w_lon += d_lon
        w_lat += d_lat
        if abs(d_lon) < 1e-10 and abs(d_lat) < 1e-10:
            break
    return w_lon, w_lat


def gcj02_to_bd09(lon: float, lat: float) -> tuple[float, float]:
    z = math.sqrt(lon * lon + lat * lat) + 0.00002 * math.sin(lat * _X_PI)
    theta = math.atan2(lat, lon) + 0.000003 * math.cos(lon * _X_PI)
    return z * math.cos(theta) + 0.0065, z * math.sin(theta) + 0.006


def bd09_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    x, y = lon - 0.0065, lat - 0.006
    z = math.sqrt(x * x + y * y) - 0.00002 * math.sin(y * _X_PI)
    theta = math.atan2(y, x) - 0.000003 * math.cos(x * _X_PI)
    return z * math.cos(theta), z * math.sin(theta)


def to_wgs84(lon: float, lat: float, crs: CRS | str) -> tuple[float, float]:
    """Convert a point in `crs` to WGS-84, returned as (lon, lat)."""
    crs = CRS(crs)
    if crs in (CRS.WGS84, CRS.CGCS2000):
        return lon, lat
    if crs is CRS.GCJ02:
        return gcj02_to_wgs84(lon, lat)
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


def from_wgs84(lon: float, lat: float, crs: CRS | str) -> tuple[float, float]:
    """Convert a WGS-84 point to `crs`, returned as (lon, lat)."""
    crs = CRS(crs)
    if crs in (CRS.WGS84, CRS.CGCS2000):
        return lon, lat
    if crs is CRS.GCJ02:
        return wgs84_to_gcj02(lon, lat)
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))
