"""Pure geofencing: grids, the point index, coordinate systems.

Nothing here touches a database, HTTP or Kafka; callers hand in plain data and get plain data back.
"""

from geo.crs import CRS, to_wgs84
from geo.distance import haversine_m
from geo.grids import Grid, GridIndex, GridLevel

__all__ = ["CRS", "Grid", "GridIndex", "GridLevel", "haversine_m", "to_wgs84"]
