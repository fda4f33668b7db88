"""Pure geofencing: grids, the point index, coordinate systems.

Nothing here touches a database, HTTP or Kafka; callers hand in plain data and get plain data back.
"""

from geo.crs import CRS, to_wgs84
from geo.distance import haversine_m
from geo.grids import Grid, GridIndex, GridLevel
from geo.validate import GridImportError, ImportReport, Rules, check_collection

__all__ = [
    "CRS",
    "Grid",
    "GridImportError",
    "GridIndex",
    "GridLevel",
    "ImportReport",
    "Rules",
    "check_collection",
    "haversine_m",
    "to_wgs84",
]
