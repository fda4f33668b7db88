"""SLA policies name their calendar: 24x7, or working hours

The bundled non-urgent categories move to working hours; urgent ones stay 24x7.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

WORKING_HOURS = ("garbage_overflow", "street_vending", "road_damage", "other")


def upgrade() -> None:
    with op.batch_alter_table("sla_policies") as batch:
        batch.add_column(
            sa.Column("calendar", sa.String(16), nullable=False, server_default="24x7")
        )
    policies = sa.table("sla_policies", sa.column("category_code"), sa.column("calendar"))
    op.execute(
        policies.update()
        .where(policies.c.category_code.in_(WORKING_HOURS))
        .values(calendar="working_hours")
    )


def downgrade() -> None:
    with op.batch_alter_table("sla_policies") as batch:
        batch.drop_column("calendar")
