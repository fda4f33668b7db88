"""Signed device requests: per-device keys (ids only; secrets derived) and seen signatures

Devices made before this revision had a hashed bearer key, which cannot sign; they keep their
rows and get a signing key with `gridflow device rotate --id ID`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_keys",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_keys_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_keys")),
    )
    op.create_index(op.f("ix_device_keys_device_id"), "device_keys", ["device_id"])
    op.create_table(
        "seen_signatures",
        sa.Column("signature", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("signature", name=op.f("pk_seen_signatures")),
    )
    op.create_index(op.f("ix_seen_signatures_seen_at"), "seen_signatures", ["seen_at"])
    with op.batch_alter_table("devices") as batch:
        batch.drop_constraint("uq_devices_key_hash", type_="unique")
        batch.drop_column("key_hash")


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("key_hash", sa.String(64), nullable=True))
        batch.create_unique_constraint("uq_devices_key_hash", ["key_hash"])
    op.drop_index(op.f("ix_seen_signatures_seen_at"), table_name="seen_signatures")
    op.drop_table("seen_signatures")
    op.drop_index(op.f("ix_device_keys_device_id"), table_name="device_keys")
    op.drop_table("device_keys")
