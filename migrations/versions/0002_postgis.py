"""PostGIS geometry for grids, where the server has PostGIS

On PostgreSQL with the postgis extension available (and the right to create it), grids also get
a `geom` column (SRID 4326) with a GiST index, filled from the GeoJSON column. Elsewhere this
revision changes nothing: PostGIS is used where present, never required.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _has_postgis() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    available = bind.exec_driver_sql(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'"
    ).scalar()
    if not available:
        return False
    savepoint = bind.begin_nested()
    try:
        bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS postgis")
        savepoint.commit()
    except Exception:
        savepoint.rollback()  # no right to create it here: carry on without
        return False
    return True


def upgrade() -> None:
    if not _has_postgis():
        return
    op.execute("ALTER TABLE grids ADD COLUMN geom geometry(Geometry, 4326)")
    op.execute(
        "UPDATE grids SET geom = ST_SetSRID(ST_GeomFromGeoJSON(geometry::text), 4326)"
    )
    op.execute("CREATE INDEX ix_grids_geom ON grids USING gist (geom)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_grids_geom")
        op.execute("ALTER TABLE grids DROP COLUMN IF EXISTS geom")
