"""Worker status: the device time of the last location, and a capacity of open tasks

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("location_device_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("capacity", sa.Integer(), nullable=False, server_default=sa.text("3"))
        )


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("capacity")
        batch.drop_column("location_device_at")
