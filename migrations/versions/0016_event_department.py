"""Case events carry their case's department, so a department's scope filters the live feed

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("case_events") as batch:
        batch.add_column(sa.Column("department", sa.String(64), nullable=True))
    # A case's queue is fixed when it opens: every event it has is of that queue.
    op.execute(
        "UPDATE case_events SET department = (SELECT cases.department FROM cases "
        "WHERE cases.id = case_events.case_id) "
        "WHERE case_id IN (SELECT id FROM cases WHERE department IS NOT NULL)"
    )


def downgrade() -> None:
    with op.batch_alter_table("case_events") as batch:
        batch.drop_column("department")
