"""Signed checkpoints of every case's chain head, and their leaves in compressed chunks

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cases", sa.Integer(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("prev_digest", sa.String(length=64), nullable=True),
        sa.Column("vanished", sa.Integer(), nullable=False),
        sa.Column("rolled_back", sa.Integer(), nullable=False),
        sa.Column(
            "faults",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
    )
    op.create_table(
        "audit_checkpoint_leaves",
        sa.Column("checkpoint_id", sa.Integer(), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["audit_checkpoints.id"],
            name=op.f("fk_audit_checkpoint_leaves_checkpoint_id_audit_checkpoints"),
        ),
        sa.PrimaryKeyConstraint("checkpoint_id", "chunk", name=op.f("pk_audit_checkpoint_leaves")),
    )


def downgrade() -> None:
    op.drop_table("audit_checkpoint_leaves")
    op.drop_table("audit_checkpoints")
