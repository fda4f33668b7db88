"""Pure geofencing: grids, the point index, coordinate systems.

Nothing here touches a database, HTTP or Kafka; callers hand in plain data and get plain data back.
"""

from geo.crs import CRS, to_wgs84
from geo.distance import haversine_m
from geo.grids import Grid, GridIndex, GridLevel
from geo.validate import (
    GridImportError,
    ImportReport,
    Progress,
    Rules,
    check_collection,
    no_progress,
)

__all__ = [
    "CRS",
    "Grid",
    "GridImportError",
    "GridIndex",
    "GridLevel",
    "ImportReport",
    "Progress",
    "Rules",
    "check_collection",
    "haversine_m",
    "no_progress",
    "to_wgs84",
]
