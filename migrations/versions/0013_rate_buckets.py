"""Rate-limit buckets shared by every API process (limits.store=database)

UNLOGGED on PostgreSQL (a crash empties it: every budget starts full; no write waits for the
WAL), with room left in each page so that a take updates its row in place.

Revision ID: 0013
Revises: 0016
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.LargeBinary(16), nullable=False),
        sa.Column("full_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("taken", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_buckets")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE rate_buckets SET UNLOGGED")
        op.execute("ALTER TABLE rate_buckets SET (fillfactor = 70)")


def downgrade() -> None:
    op.drop_table("rate_buckets")
