"""SLA pauses: a case's clocks stopped while it waits for the resident or on an extension

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sla_timers") as batch:
        batch.add_column(sa.Column("paused_remaining_s", sa.Float(), nullable=True))
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("pause_kind", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("pause_kind")
        batch.drop_column("paused_at")
    with op.batch_alter_table("sla_timers") as batch:
        batch.drop_column("paused_remaining_s")
