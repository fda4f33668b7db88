"""Coarse locations: a precise point replaced by the centre of its cell in a grid of squares."""

from __future__ import annotations

import math

METRES_PER_DEGREE = 111_320.0  # of latitude, and of longitude at the equator


def coarsen(lon: float, lat: float, metres: float) -> tuple[float, float]:
    """The centre of the `metres`-wide cell holding (lon, lat): rows of equal latitude
    height, each cut into cells of equal width at its centre line. Coarsening a coarse point
    gives it back unchanged, so the job can run again over what it did."""
    dlat = metres / METRES_PER_DEGREE
    clat = (math.floor(lat / dlat) + 0.5) * dlat
    dlon = metres / (METRES_PER_DEGREE * max(math.cos(math.radians(clat)), 1e-6))
    clon = (math.floor(lon / dlon) + 0.5) * dlon
    return round(clon, 7), round(clat, 7)
